//! Client-side evaluation of result-reference JSON pointers (RFC 8620 §3.7, with the `*`
//! array-mapping extension), used when a reference must be resolved across HTTP requests.

use serde_json::Value;

/// Evaluates `path` against `value`. `None` if the path does not resolve.
pub(crate) fn evaluate(value: &Value, path: &str) -> Option<Value> {
    if path.is_empty() {
        return Some(value.clone());
    }
    let rest = path.strip_prefix('/')?;
    let tokens: Vec<String> = rest.split('/').map(unescape).collect();
    eval(value, &tokens)
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn eval(value: &Value, tokens: &[String]) -> Option<Value> {
    let Some((first, rest)) = tokens.split_first() else {
        return Some(value.clone());
    };
    match value {
        Value::Array(items) if first == "*" => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match eval(item, rest)? {
                    // RFC 8620 §3.7: arrays produced per item are flattened into the result.
                    Value::Array(inner) => out.extend(inner),
                    v => out.push(v),
                }
            }
            Some(Value::Array(out))
        }
        Value::Array(items) => {
            let index: usize = first.parse().ok()?;
            eval(items.get(index)?, rest)
        }
        Value::Object(map) => eval(map.get(first.as_str())?, rest),
        _ => None,
    }
}

/// Escapes one JSON-pointer token (`~` → `~0`, `/` → `~1`).
pub(crate) fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc_examples() {
        let v = json!({
            "ids": ["a", "b"],
            "list": [{"id": "a", "threadId": "t1", "emailIds": ["x", "y"]}, {"id": "b", "threadId": "t2", "emailIds": ["z"]}],
            "a/b": {"c~d": 1}
        });
        assert_eq!(evaluate(&v, "/ids"), Some(json!(["a", "b"])));
        assert_eq!(evaluate(&v, "/list/*/id"), Some(json!(["a", "b"])));
        assert_eq!(evaluate(&v, "/list/*/threadId"), Some(json!(["t1", "t2"])));
        assert_eq!(
            evaluate(&v, "/list/*/emailIds"),
            Some(json!(["x", "y", "z"]))
        );
        assert_eq!(evaluate(&v, "/list/1/id"), Some(json!("b")));
        assert_eq!(evaluate(&v, "/a~1b/c~0d"), Some(json!(1)));
        assert_eq!(evaluate(&v, "/nope"), None);
        assert_eq!(evaluate(&v, "/list/9/id"), None);
        assert_eq!(evaluate(&v, "/list/*/missing"), None);
        assert_eq!(evaluate(&v, "ids"), None);
        assert_eq!(evaluate(&v, ""), Some(v.clone()));
        assert_eq!(escape("a/b~c"), "a~1b~0c");
    }
}
