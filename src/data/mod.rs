//! The dataset artifact format (shards, labels, manifest) and its readers.
