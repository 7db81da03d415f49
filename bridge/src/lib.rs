//! # tandem-bridge
//!
//! The MCU node.
