//! The command line: argument parsing and one function per verb.
