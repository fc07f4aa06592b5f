//! Pure, I/O-free composition logic shared by the gateway: URL templates that place route
//! parameters safely into backend URLs, assembly of the grouped JSON response from raw call
//! bodies, and the `Server-Timing` header. Nothing here touches a socket or a clock, so every
//! rule is tested directly.

pub mod body;
pub mod graph;
pub mod json;
pub mod names;
pub mod path;
pub mod shape;
pub mod template;
pub mod timing;

pub use body::{BodyBuilder, ErrorEntry, StaleEntry, json_key, write_list};
pub use graph::{Cycle, Graph, Schedule};
pub use json::{MAX_BODY_NESTING, check_json};
pub use path::{JsonPath, LookupError, PathError, Segment, scalar_text};
pub use shape::{Shape, ShapeError};
pub use template::{
    Inputs, Names, ParamError, Position, RenderError, Template, TemplateError, push_query_pair,
};
pub use timing::server_timing;
