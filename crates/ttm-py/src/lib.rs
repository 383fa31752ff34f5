//! The Python module `ttm` (pyo3, built with maturin) over `ttm-core`.
//!
//! **Not built yet.** A placeholder in the workspace that exports nothing;
//! the module arrives with the issue "`ttm-py`: `import ttm` on the real
//! server".
