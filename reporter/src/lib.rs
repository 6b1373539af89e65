//! Coverage reports from the merger's model.
//!
//! One module per output format; every writer borrows a
//! [`covnet_merger::model::Coverage`] and streams into a writer or directory.
#![deny(missing_docs)]
