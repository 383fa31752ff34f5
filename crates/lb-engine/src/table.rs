//! The session table: a slab of entries and an index of both keys. (Being written.)
