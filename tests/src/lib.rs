//! Helpers that start real `coffer` processes for end-to-end tests.
