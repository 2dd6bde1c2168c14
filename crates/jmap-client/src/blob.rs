//! Binary data (RFC 8620 §6): streaming upload from an `AsyncRead` and streaming download
//! to an `AsyncWrite`, honouring `maxSizeUpload` and `maxConcurrentUpload`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::client::Client;
use crate::error::Error;
use crate::id::{AccountId, BlobId};
use crate::transport;

const CHUNK: usize = 64 * 1024;

/// The server's answer to an upload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadResponse {
    /// `accountId`
    #[serde(default)]
    pub account_id: Option<AccountId>,
    /// `blobId`
    pub blob_id: BlobId,
    /// `type`: the media type as stored.
    #[serde(rename = "type", default)]
    pub content_type: Option<String>,
    /// `size` in octets.
    #[serde(default)]
    pub size: u64,
}

impl Client {
    /// Uploads bytes already in memory.
    pub async fn upload_bytes(
        &self,
        account_id: &AccountId,
        content_type: &str,
        data: impl Into<Bytes>,
    ) -> Result<UploadResponse, Error> {
        let data: Bytes = data.into();
        let size = u64::try_from(data.len()).unwrap_or(u64::MAX);
        self.check_upload_size(size)?;
        self.upload_body(
            account_id,
            content_type,
            reqwest::Body::from(data),
            Some(size),
            None,
        )
        .await
    }

    /// Uploads from a reader without holding the data in memory. With `size` the request
    /// carries a `Content-Length` and an oversized upload is refused before sending;
    /// without it the body is sent chunked and aborted once it passes `maxSizeUpload`.
    pub async fn upload<R>(
        &self,
        account_id: &AccountId,
        content_type: &str,
        reader: R,
        size: Option<u64>,
    ) -> Result<UploadResponse, Error>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        if let Some(s) = size {
            self.check_upload_size(s)?;
        }
        let max = self.session().core().max_size_upload;
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let stream = futures::stream::try_unfold(reader, move |mut reader| {
            let counter = counter.clone();
            async move {
                let mut buf = BytesMut::zeroed(CHUNK);
                let n = reader
                    .read(&mut buf)
                    .await
                    .map_err(|e| -> BoxError { Box::new(ReaderFailed(e)) })?;
                if n == 0 {
                    return Ok(None);
                }
                buf.truncate(n);
                let total = counter.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                if total > max {
                    return Err(Box::new(UploadLimit) as BoxError);
                }
                Ok(Some((buf.freeze(), reader)))
            }
        });
        let body = reqwest::Body::wrap_stream(stream);
        self.upload_body(account_id, content_type, body, size, Some((sent, max)))
            .await
    }

    fn check_upload_size(&self, size: u64) -> Result<(), Error> {
        let max = self.session().core().max_size_upload;
        if size > max {
            return Err(Error::UploadTooLarge { size, max });
        }
        Ok(())
    }

    async fn upload_body(
        &self,
        account_id: &AccountId,
        content_type: &str,
        body: reqwest::Body,
        size: Option<u64>,
        counter: Option<(Arc<AtomicU64>, u64)>,
    ) -> Result<UploadResponse, Error> {
        let session = self.session();
        let url = session
            .upload_url()
            .expand(&[("accountId", account_id.as_str())])?;
        transport::check_url_allowed(&url, self.config().allow_insecure_http)?;
        let _permit = self.upload_permits().acquire().await.ok();
        let mut req = self
            .authed(self.http().post(url))
            .header(CONTENT_TYPE, content_type)
            .body(body);
        if let Some(s) = size {
            req = req.header(CONTENT_LENGTH, s);
        }
        let mut watch = transport::Watchdog::new(self.config().stall_timeout);
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                if let Some((sent, max)) = counter {
                    let n = sent.load(Ordering::Relaxed);
                    if n > max {
                        return Err(Error::UploadTooLarge { size: n, max });
                    }
                }
                return Err(io_source(&e).unwrap_or_else(|| transport::map_reqwest_error(e)));
            }
        };
        if !resp.status().is_success() {
            return Err(transport::error_from_response(resp, &mut watch).await);
        }
        // An upload answer is a small JSON object.
        let bytes = transport::read_capped(resp, 1 << 20, &mut watch).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::decode("upload response", e))
    }

    /// Downloads a blob into a writer, streaming; returns the number of bytes written.
    /// `name` and `content_type` fill the download URL template (they become the file name
    /// and `Content-Type` the server answers with).
    pub async fn download<W>(
        &self,
        account_id: &AccountId,
        blob_id: &BlobId,
        name: &str,
        content_type: &str,
        writer: &mut W,
    ) -> Result<u64, Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let session = self.session();
        let url = session.download_url().expand(&[
            ("accountId", account_id.as_str()),
            ("blobId", blob_id.as_str()),
            ("name", name),
            ("type", content_type),
        ])?;
        transport::check_url_allowed(&url, self.config().allow_insecure_http)?;
        // The whole transfer may take long; bound only the lack of progress (the head, then
        // each stall window).
        let mut watch = transport::Watchdog::new(self.config().stall_timeout);
        let resp = watch.head(self.authed(self.http().get(url)).send()).await?;
        if !resp.status().is_success() {
            return Err(transport::error_from_response(resp, &mut watch).await);
        }
        let mut stream = resp.bytes_stream();
        let mut written = 0u64;
        while let Some(chunk) = watch
            .chunk(async {
                stream
                    .next()
                    .await
                    .transpose()
                    .map_err(transport::map_reqwest_error)
            })
            .await?
        {
            writer.write_all(&chunk).await.map_err(|source| Error::Io {
                context: "writing a downloaded blob",
                source,
            })?;
            written += chunk.len() as u64;
        }
        writer.flush().await.map_err(|source| Error::Io {
            context: "writing a downloaded blob",
            source,
        })?;
        Ok(written)
    }

    /// Downloads a blob into memory, failing with [`Error::Io`] beyond `max_bytes`.
    pub async fn download_bytes(
        &self,
        account_id: &AccountId,
        blob_id: &BlobId,
        max_bytes: usize,
    ) -> Result<Vec<u8>, Error> {
        let mut sink = LimitedVec {
            data: Vec::new(),
            max: max_bytes,
        };
        self.download(
            account_id,
            blob_id,
            "blob",
            "application/octet-stream",
            &mut sink,
        )
        .await?;
        Ok(sink.data)
    }
}

#[derive(Debug)]
struct UploadLimit;

impl std::fmt::Display for UploadLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upload exceeds maxSizeUpload")
    }
}

impl std::error::Error for UploadLimit {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The upload reader failed (kept apart from the connection's own I/O errors).
#[derive(Debug)]
struct ReaderFailed(std::io::Error);

impl std::fmt::Display for ReaderFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reading the upload source failed: {}", self.0)
    }
}

impl std::error::Error for ReaderFailed {}

/// An error of the upload reader, found in the HTTP error's source chain.
fn io_source(e: &reqwest::Error) -> Option<Error> {
    transport::find_in_chain::<ReaderFailed>(e).map(|ReaderFailed(io)| Error::Io {
        context: "reading the upload source",
        source: std::io::Error::new(io.kind(), io.to_string()),
    })
}

struct LimitedVec {
    data: Vec<u8>,
    max: usize,
}

impl AsyncWrite for LimitedVec {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.data.len() + buf.len() > self.max {
            return std::task::Poll::Ready(Err(std::io::Error::other(
                "blob larger than the allowed maximum",
            )));
        }
        self.data.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
