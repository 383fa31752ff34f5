//! The local address and port allocator. (Being written.)
