//! Integration tests: the train stage.
