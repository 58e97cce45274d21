//! Helpers to describe HTTP routes in an OpenAPI document (aide over
//! schemars), shared by every role that serves routes: the bridge builds
//! its document with them, and a role whose routes a host process adds to
//! the bridge's (the leaderboards, the lake's analytics) documents them the
//! same way, returning [`HostPaths`] for the host to pass on.
//!
//! What the types cannot say (status codes, headers, what a route is for)
//! is said with these, beside the handlers.

use aide::openapi::{
    MediaType, Operation, PathItem, ReferenceOr, Response, SchemaObject, StatusCode,
};
use aide::transform::TransformOperation;
use indexmap::IndexMap;
use schemars::JsonSchema;
use shared::wire::ErrorBody;

/// A host's documentation of the routes it adds to the bridge: `(path,
/// item)` pairs, built with the helpers of this module and aide's
/// [`TransformOperation`]. A function, not a value: it runs inside the
/// document's schema generator, so a type both sides use (the error body)
/// is one component and every `$ref` it writes resolves.
pub type HostPaths = fn() -> Vec<(String, PathItem)>;

/// A route answering GET, documented by `f`.
pub fn get(
    route: &str,
    f: impl FnOnce(TransformOperation<'_>) -> TransformOperation<'_>,
) -> (String, PathItem) {
    let item = PathItem {
        get: Some(operation(f)),
        ..PathItem::default()
    };
    (route.to_string(), item)
}

/// A route answering POST, documented by `f`.
pub fn post(
    route: &str,
    f: impl FnOnce(TransformOperation<'_>) -> TransformOperation<'_>,
) -> (String, PathItem) {
    let item = PathItem {
        post: Some(operation(f)),
        ..PathItem::default()
    };
    (route.to_string(), item)
}

/// A route answering DELETE, documented by `f`.
pub fn delete(
    route: &str,
    f: impl FnOnce(TransformOperation<'_>) -> TransformOperation<'_>,
) -> (String, PathItem) {
    let item = PathItem {
        delete: Some(operation(f)),
        ..PathItem::default()
    };
    (route.to_string(), item)
}

/// An operation documented by `f`.
pub fn operation(f: impl FnOnce(TransformOperation<'_>) -> TransformOperation<'_>) -> Operation {
    let mut operation = Operation::default();
    let _ = f(TransformOperation::new(&mut operation));
    operation
}

/// A response with the JSON error body (`{"error", "detail"}`); a 503 says
/// it carries `Retry-After`.
pub fn error_response<'t>(
    op: TransformOperation<'t>,
    status: u16,
    description: &str,
) -> TransformOperation<'t> {
    let mut op = op;
    let mut response = json_response::<ErrorBody>(&mut op, description);
    if status == 503 {
        response.headers.insert(
            "Retry-After".into(),
            ReferenceOr::Item(
                serde_json::from_value(serde_json::json!({
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer", "minimum": 0},
                }))
                .expect("a well-formed header"),
            ),
        );
    }
    insert(op.inner_mut(), status, response);
    op
}

/// A response whose body is `T` as JSON.
pub fn json_response<T: JsonSchema>(
    op: &mut TransformOperation<'_>,
    description: &str,
) -> Response {
    let _ = op;
    let schema = aide::generate::in_context(|ctx| ctx.schema.subschema_for::<T>());
    Response {
        description: description.into(),
        content: IndexMap::from_iter([(
            "application/json".to_string(),
            MediaType {
                schema: Some(SchemaObject {
                    json_schema: schema,
                    example: None,
                    external_docs: None,
                }),
                ..MediaType::default()
            },
        )]),
        ..Response::default()
    }
}

/// An error axum's own extractors answer before the handler runs (a query
/// that does not parse, a body over the limit, a request that is not a
/// WebSocket handshake): `text/plain`. When `status` is documented already
/// (the handler's JSON error), the text is added as a second media type.
pub fn text_error<'t>(
    op: TransformOperation<'t>,
    status: u16,
    description: &str,
) -> TransformOperation<'t> {
    let mut op = op;
    let text = MediaType {
        schema: Some(SchemaObject {
            json_schema: schemars::json_schema!({"type": "string"}),
            example: None,
            external_docs: None,
        }),
        ..MediaType::default()
    };
    let responses = op
        .inner_mut()
        .responses
        .get_or_insert_with(Default::default);
    match responses.responses.get_mut(&StatusCode::Code(status)) {
        Some(ReferenceOr::Item(response)) => {
            response.description = format!("{} {description}", response.description);
            response.content.insert("text/plain".into(), text);
        }
        _ => {
            let response = Response {
                description: description.into(),
                content: IndexMap::from_iter([("text/plain".to_string(), text)]),
                ..Response::default()
            };
            insert(op.inner_mut(), status, response);
        }
    }
    op
}

/// A response that is not JSON (`content_type`), or has no body (`None`).
pub fn plain<'t>(
    op: TransformOperation<'t>,
    status: u16,
    description: &str,
    content_type: Option<&str>,
) -> TransformOperation<'t> {
    let mut op = op;
    let mut response = Response {
        description: description.into(),
        ..Response::default()
    };
    if let Some(content_type) = content_type {
        response
            .content
            .insert(content_type.to_string(), MediaType::default());
    }
    insert(op.inner_mut(), status, response);
    op
}

/// Documents `response` as the answer with `status`.
pub fn insert(operation: &mut Operation, status: u16, response: Response) {
    operation
        .responses
        .get_or_insert_with(Default::default)
        .responses
        .insert(StatusCode::Code(status), ReferenceOr::Item(response));
}
