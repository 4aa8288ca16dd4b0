//! stub: the participant crate (being written)
