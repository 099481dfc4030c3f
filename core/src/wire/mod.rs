//! The WebSocket wire messages (contract section 5).
//!
//! Client messages are parsed here with the `bad_request` reason that names what was wrong;
//! server messages are encoded here once, into bytes that every recipient can share.

pub mod client;
pub mod export;
pub mod server;
pub mod topic;

pub use client::{
    parse_client_message, replay_topic, BadRequest, BadRequestReason, ClientMessage, ReplayControl,
    ReplayRequest, SubscribeOptions,
};
pub use export::{parse_export_query, ExportFormat, ExportQueryError, ExportWindow, TrackWriter};
pub use server::{
    encode, frame, position_frame, position_message, ErrorCode, ServerMessage, SnapshotPosition,
    TrailPoint, WirePosition,
};
pub use topic::Topic;
