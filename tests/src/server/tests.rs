//! Unit tests of the server model.
