//! `builtin:echo`: answers like an OpenAI-compatible server, from the
//! request alone (the same request always gets the same answer), so the
//! README walkthrough, the tests and the benchmark need no model server.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::upstream::Answer;

/// The answer to `body` sent to `path`.
pub fn answer(path: &str, body: &[u8]) -> Answer {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return status(400, json!({"error": {"message": "the body is not JSON", "type": "invalid_request_error"}}), body);
    };
    let model = request["model"].as_str().unwrap_or_default();
    let digest = Sha256::digest(body);
    let tag: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    let response = match path {
        "/v1/chat/completions" => {
            let content = request["messages"]
                .as_array()
                .and_then(|messages| messages.last())
                .map(|message| match &message["content"] {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            let tokens = content.split_whitespace().count();
            json!({
                "id": format!("chatcmpl-{tag}"),
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }],
                "usage": {"prompt_tokens": tokens, "completion_tokens": tokens, "total_tokens": 2 * tokens},
            })
        }
        "/v1/completions" => {
            let text = request["prompt"].as_str().unwrap_or_default().to_owned();
            json!({
                "id": format!("cmpl-{tag}"),
                "object": "text_completion",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
            })
        }
        "/v1/embeddings" => {
            let embedding: Vec<f64> = digest[..8].iter().map(|b| f64::from(*b) / 255.0).collect();
            json!({
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": embedding}],
                "model": model,
            })
        }
        _ => {
            let text = request["input"].as_str().unwrap_or_default().to_owned();
            json!({
                "id": format!("resp_{tag}"),
                "object": "response",
                "created_at": 0,
                "model": model,
                "status": "completed",
                "output": [{"type": "message", "role": "assistant",
                            "content": [{"type": "output_text", "text": text}]}],
            })
        }
    };
    status(200, response, body)
}

fn status(code: u16, response: Value, request: &[u8]) -> Answer {
    let digest = Sha256::digest(request);
    let id: String = digest[12..24].iter().map(|b| format!("{b:02x}")).collect();
    Answer::Status {
        code,
        request_id: Some(format!("req_{id}")),
        retry_after: None,
        body: serde_json::to_vec(&response).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_the_last_message_deterministically() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hello there"}]}"#;
        let (Answer::Status { code, body: first, .. }, Answer::Status { body: second, .. }) =
            (answer("/v1/chat/completions", body), answer("/v1/chat/completions", body))
        else {
            panic!("echo always answers");
        };
        assert_eq!(code, 200);
        assert_eq!(first, second);
        let value: Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(value["choices"][0]["message"]["content"], "hello there");
        assert_eq!(value["model"], "m");
    }
}
