//! attestgate route policies: the file model API owners write, its compiler, and the route index.
#![forbid(unsafe_code)]
