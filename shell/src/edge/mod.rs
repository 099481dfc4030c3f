//! What every listener does before the product sees a byte: accepting without spinning when
//! the process is out of file descriptors, bounding how long and how large a request head
//! may be, and how many WebSockets may be open (contract section 5, "Connections").

pub mod accept;
pub mod http;
pub mod open_files;
pub mod slots;
