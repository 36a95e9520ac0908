//! `/boards/[id]`: a dynamic route; only the viewers of one board hear of its waves.

#[path = "[id]/page.rs"]
mod page;

pub use page::show;
