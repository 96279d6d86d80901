//! The Worker runtime adapter (wasm32 only).
