//! `/dashboard`: each team's task list. Adding a task updates every member of that team who is on the
//! page, and nobody else.

pub mod page;
