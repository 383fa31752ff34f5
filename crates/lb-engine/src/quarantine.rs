//! The quarantine of recently closed tuples. (Being written.)
