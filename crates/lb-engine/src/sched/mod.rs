//! Schedulers: which backend a new session goes to. (Being written.)
