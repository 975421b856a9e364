//! Message sources. Each decodes what it receives (on the blocking pool) and sends
//! [`crate::pipeline::DecodedBatch`]es to the pipeline; the HTTP source lives in
//! [`crate::server`] since it is a route.

pub(crate) mod file;
pub(crate) mod sqs;
