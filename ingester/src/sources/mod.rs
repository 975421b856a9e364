//! Message sources. Each decodes what it receives (on the blocking pool) and sends
//! [`crate::pipeline::DecodedBatch`]es to the pipeline; the HTTP source lives in
//! [`crate::server`] since it is a route.

pub mod file;
pub mod sqs;
