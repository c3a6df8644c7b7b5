//! `POST /notify/batch`: many `POST /notify` bodies in one request, all checked before
//! any is published, then published in order.

use bytes::Bytes;
use warp::http::StatusCode;
use warp::reply::Response;

use super::error::BodyLimit;
use super::notify::Notification;
use super::{body, json_bytes, ApiError};
use crate::metrics::Via;
use crate::protocol::{is_json_object, reply, NotifyBatchRequest, NotifyRequest};
use crate::state::AppState;

/// Most notifications one batch may carry.
pub const MAX_BATCH: usize = 1000;

/// Checks every notification of the batch first: one bad item refuses the whole batch
/// with the error that item would get from `POST /notify`, naming its index, and
/// nothing is published. Then publishes the items in order, one after another, so
/// notifications to one group keep their order in the batch (and their offsets grow in
/// that order). The reply lists one `POST /notify` reply per item, in item order.
///
/// A broker failure midway (possible with a broker that has a backing service) answers
/// 503 after the items before it were published; the memory broker cannot fail.
pub async fn notify_batch(state: AppState, raw: Bytes) -> Result<Response, ApiError> {
    let batch = parse(&raw, BodyLimit::body(state.config.max_body))?;
    let mut results = Vec::with_capacity(batch.len());
    for notification in &batch {
        results.push(notification.publish(&state).await?);
    }
    state
        .metrics
        .notifications_accepted(Via::Batch, results.len());
    Ok(json_bytes(
        StatusCode::ACCEPTED,
        reply::batch_json(&results),
    ))
}

/// Parses and validates the whole batch: 1 to [`MAX_BATCH`] items, each a valid
/// `POST /notify` body of at most `item_limit` bytes (that endpoint's body limit).
///
/// The body is read as a list of raw items first (JSON syntax anywhere is `invalid_json`
/// for the whole body), then each item is checked on its own, so an error names its item.
/// Nothing is copied: every item's `data` is a slice of `raw`.
fn parse(raw: &Bytes, item_limit: BodyLimit) -> Result<Vec<Notification>, ApiError> {
    let batch: NotifyBatchRequest<'_> = body::parse(raw)?;
    let items = batch.notifications;
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::InvalidRequest(format!(
            "`notifications` must list 1 to {MAX_BATCH} notifications, got {}",
            items.len()
        )));
    }
    let in_batch = |index, error| ApiError::InBatch {
        index,
        error: Box::new(error),
    };
    let mut batch: Vec<Notification> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let json = item.get();
        if json.len() > item_limit.bytes as usize {
            let limit = BodyLimit {
                what: "notification",
                ..item_limit
            };
            return Err(in_batch(index, ApiError::PayloadTooLarge(limit)));
        }
        if !is_json_object(json.as_bytes()) {
            let e = ApiError::InvalidRequest("a notification must be a JSON object".into());
            return Err(in_batch(index, e));
        }
        let notification = serde_json::from_str::<NotifyRequest<'_>>(json)
            .map_err(body::json_error)
            .and_then(|req| Notification::validate_after(req, raw, batch.last()))
            .map_err(|e| in_batch(index, e))?;
        batch.push(notification);
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(json: &str) -> Result<usize, (u16, &'static str, String)> {
        parse(
            &Bytes::copy_from_slice(json.as_bytes()),
            BodyLimit::body(64),
        )
        .map(|b| b.len())
        .map_err(|e| (e.status().as_u16(), e.code(), e.to_string()))
    }

    #[test]
    fn a_bad_item_names_its_index_and_keeps_its_own_error_code() {
        let ok = r#"{"group":"a","data":1}"#;
        assert_eq!(
            parse_ok(&format!(r#"{{"notifications":[{ok},{ok}]}}"#)),
            Ok(2)
        );
        let (status, code, message) = parse_ok(&format!(
            r#"{{"notifications":[{ok},{{"group":"a b","data":1}}]}}"#
        ))
        .unwrap_err();
        assert_eq!((status, code), (400, "invalid_group"));
        assert!(message.starts_with("notifications[1]: "), "{message}");

        let (status, code, message) = parse_ok(r#"{"notifications":[7]}"#).unwrap_err();
        assert_eq!((status, code), (400, "invalid_request"));
        assert!(message.starts_with("notifications[0]: "), "{message}");
    }

    #[test]
    fn an_item_over_max_body_is_413_naming_its_index() {
        let big = format!(r#"{{"group":"a","data":"{}"}}"#, "x".repeat(64));
        let (status, code, message) =
            parse_ok(&format!(r#"{{"notifications":[{big}]}}"#)).unwrap_err();
        assert_eq!((status, code), (413, "payload_too_large"));
        assert!(
            message
                .starts_with("notifications[0]: notification is larger than 64 bytes (--max-body)"),
            "{message}"
        );
    }

    #[test]
    fn empty_and_oversized_batches_are_refused() {
        let (status, _, message) = parse_ok(r#"{"notifications":[]}"#).unwrap_err();
        assert_eq!(status, 400);
        assert!(message.contains("got 0"), "{message}");
        let items = vec![r#"{"group":"a","data":1}"#; MAX_BATCH + 1].join(",");
        let (status, _, message) =
            parse_ok(&format!(r#"{{"notifications":[{items}]}}"#)).unwrap_err();
        assert_eq!(status, 400);
        assert!(message.contains("got 1001"), "{message}");
        assert_eq!(parse_ok(r#"{"notifications":null}"#).unwrap_err().0, 400);
        assert_eq!(parse_ok(r#"{"notes":[]}"#).unwrap_err().0, 400);
    }
}
