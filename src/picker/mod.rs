//! Choosing an instance: the [`Picker`] trait over skim ([`SkimPicker`]; a scripted picker in
//! tests), the rows it shows and their preview, the matcher shared with `postern list`, column
//! widths that fit the terminal, and frecency.

mod columns;
mod frecency;
mod matcher;
mod narrow;
mod pick;
mod preview;
mod row;
mod screen;

pub use columns::{fit_cell, fit_widths};
pub use frecency::Frecency;
pub use matcher::{SearchFields, rank};
pub use pick::{Feed, PickOutcome, PickRequest, Picker, choose};
pub use row::{Columns, Row, RowContext, Shared};
pub use screen::SkimPicker;
