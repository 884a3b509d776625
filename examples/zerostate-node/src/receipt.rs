//! Signed execution receipts: every executed task, successful or not, yields a
//! receipt (task, module hash, fuel, result, time) serialized to JSON and signed
//! with the node's ed25519 key; anyone with the node's public key can verify it.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zs_observe::instrumented;

use crate::wasm::{hex, ExecError, Execution};

/// How a task ended, as recorded in its receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum TaskResult {
    /// `run` returned `value`.
    Ok {
        /// The returned value.
        value: i64,
    },
    /// The module trapped.
    Trap {
        /// The trap.
        code: String,
    },
    /// The fuel budget ran out.
    OutOfFuel,
    /// The module was rejected.
    Invalid {
        /// Why.
        reason: String,
    },
}

/// What the node attests about one executed task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Receipt {
    /// The task.
    pub(crate) task_id: u64,
    /// Hex SHA-256 of the module binary.
    pub(crate) module_hash: String,
    /// Fuel consumed: the task's cost.
    pub(crate) fuel_used: u64,
    /// The task's fuel budget.
    pub(crate) fuel_limit: u64,
    /// Linear memory after the run, in bytes.
    pub(crate) memory_bytes: u64,
    /// How it ended.
    pub(crate) result: TaskResult,
    /// When the receipt was made, milliseconds since the Unix epoch.
    pub(crate) timestamp_ms: u64,
    /// Hex ed25519 public key of the executing node.
    pub(crate) executor: String,
}

impl Receipt {
    /// The receipt of a run of `module_hash` with budget `fuel_limit`.
    pub(crate) fn new(
        task_id: u64,
        module_hash: &str,
        fuel_limit: u64,
        outcome: &Result<Execution, ExecError>,
        executor: &VerifyingKey,
    ) -> Self {
        let (fuel_used, memory_bytes, result) = match outcome {
            Ok(e) => (
                e.fuel_used,
                e.memory_bytes,
                TaskResult::Ok { value: e.value },
            ),
            Err(ExecError::Trap {
                code,
                fuel_used,
                memory_bytes,
            }) => (
                *fuel_used,
                *memory_bytes,
                TaskResult::Trap { code: code.clone() },
            ),
            Err(ExecError::OutOfFuel {
                fuel_used,
                memory_bytes,
            }) => (*fuel_used, *memory_bytes, TaskResult::OutOfFuel),
            Err(ExecError::Invalid(reason)) => (
                0,
                0,
                TaskResult::Invalid {
                    reason: reason.clone(),
                },
            ),
        };
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        metrics::counter!("zerostate_receipts_total", "status" => "generated").increment(1);
        Receipt {
            task_id,
            module_hash: module_hash.to_owned(),
            fuel_used,
            fuel_limit,
            memory_bytes,
            result,
            timestamp_ms,
            executor: hex(executor.as_bytes()),
        }
    }

    /// The bytes that are signed: the receipt's JSON (fields in declaration order).
    fn signed_bytes(&self) -> Result<Vec<u8>, ReceiptError> {
        serde_json::to_vec(self).map_err(|e| ReceiptError::Encoding(e.to_string()))
    }
}

/// A receipt with the executor's signature over its JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SignedReceipt {
    /// The attested facts.
    pub(crate) receipt: Receipt,
    /// Hex ed25519 signature over the receipt's JSON.
    pub(crate) signature: String,
}

/// Why a receipt could not be signed or did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReceiptError {
    /// The receipt could not be serialized.
    Encoding(String),
    /// The signature is malformed.
    MalformedSignature,
    /// The signature does not match the receipt and key.
    BadSignature,
    /// No entropy for a key.
    Entropy(String),
}

impl fmt::Display for ReceiptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiptError::Encoding(e) => write!(f, "cannot encode the receipt: {e}"),
            ReceiptError::MalformedSignature => f.write_str("malformed signature"),
            ReceiptError::BadSignature => f.write_str("signature does not match the receipt"),
            ReceiptError::Entropy(e) => write!(f, "no entropy for a signing key: {e}"),
        }
    }
}

impl std::error::Error for ReceiptError {}

/// The node's signing identity, generated once per node.
pub(crate) struct ReceiptSigner {
    key: SigningKey,
}

impl fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiptSigner")
            .field("public_key", &hex(self.key.verifying_key().as_bytes()))
            .finish_non_exhaustive()
    }
}

impl ReceiptSigner {
    /// A key from the operating system's entropy.
    pub(crate) fn generate() -> Result<Self, ReceiptError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| ReceiptError::Entropy(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }

    /// A deterministic key (tests, reproducible nodes).
    pub(crate) fn from_seed(seed: [u8; 32]) -> Self {
        ReceiptSigner {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The public key receipts verify against.
    pub(crate) fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs a receipt.
    #[instrumented(
        span = "receipt.sign",
        fields(task.id = receipt.task_id),
        skip(self, receipt),
        err(level = "warn")
    )]
    pub(crate) fn sign(&self, receipt: Receipt) -> Result<SignedReceipt, ReceiptError> {
        let signature = self.key.sign(&receipt.signed_bytes()?);
        metrics::counter!("zerostate_receipts_total", "status" => "signed").increment(1);
        Ok(SignedReceipt {
            receipt,
            signature: hex(&signature.to_bytes()),
        })
    }
}

/// Checks a receipt's signature against `key` (strict ed25519 verification).
#[instrumented(
    span = "receipt.verify",
    fields(task.id = signed.receipt.task_id),
    skip(signed, key),
    err(level = "warn")
)]
pub(crate) fn verify(signed: &SignedReceipt, key: &VerifyingKey) -> Result<(), ReceiptError> {
    let result = unhex(&signed.signature)
        .and_then(|bytes| {
            Signature::from_slice(&bytes).map_err(|_| ReceiptError::MalformedSignature)
        })
        .and_then(|signature| {
            let bytes = signed.receipt.signed_bytes()?;
            key.verify_strict(&bytes, &signature)
                .map_err(|_| ReceiptError::BadSignature)
        });
    let status = if result.is_ok() {
        "verified"
    } else {
        "rejected"
    };
    metrics::counter!("zerostate_receipts_total", "status" => status).increment(1);
    result
}

fn unhex(s: &str) -> Result<Vec<u8>, ReceiptError> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return Err(ReceiptError::MalformedSignature);
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| ReceiptError::MalformedSignature))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed() -> (ReceiptSigner, SignedReceipt) {
        let signer = ReceiptSigner::from_seed([7; 32]);
        let outcome = Ok(Execution {
            value: 500_500,
            fuel_used: 4_012,
            memory_bytes: 65_536,
        });
        let receipt = Receipt::new(42, "ab12", 1_000_000, &outcome, &signer.verifying_key());
        let signed = signer.sign(receipt).expect("signs");
        (signer, signed)
    }

    #[test]
    fn a_signed_receipt_verifies_and_round_trips_through_json() {
        let (signer, signed) = signed();
        assert_eq!(verify(&signed, &signer.verifying_key()), Ok(()));
        let json = serde_json::to_string(&signed).expect("encodes");
        let back: SignedReceipt = serde_json::from_str(&json).expect("decodes");
        assert_eq!(back, signed);
        assert_eq!(verify(&back, &signer.verifying_key()), Ok(()));
        assert_eq!(back.receipt.result, TaskResult::Ok { value: 500_500 });
        assert!(json.contains(r#""status":"ok""#), "{json}");
    }

    #[test]
    fn a_tampered_receipt_fails() {
        let (signer, signed) = signed();
        let key = signer.verifying_key();
        let mut cheaper = signed.clone();
        cheaper.receipt.fuel_used -= 1;
        assert_eq!(verify(&cheaper, &key), Err(ReceiptError::BadSignature));
        let mut other_result = signed.clone();
        other_result.receipt.result = TaskResult::Ok { value: 1 };
        assert_eq!(verify(&other_result, &key), Err(ReceiptError::BadSignature));
        let mut flipped = signed.clone();
        let first = if flipped.signature.starts_with('0') {
            "1"
        } else {
            "0"
        };
        flipped.signature.replace_range(..1, first);
        assert_eq!(verify(&flipped, &key), Err(ReceiptError::BadSignature));
        let mut garbage = signed.clone();
        garbage.signature = "zz".into();
        assert_eq!(
            verify(&garbage, &key),
            Err(ReceiptError::MalformedSignature)
        );
        // Another node's key does not verify this node's receipt.
        let stranger = ReceiptSigner::from_seed([8; 32]).verifying_key();
        assert_eq!(verify(&signed, &stranger), Err(ReceiptError::BadSignature));
    }

    #[test]
    fn failed_tasks_get_receipts_too() {
        let signer = ReceiptSigner::generate().expect("entropy");
        let outcome = Err(ExecError::OutOfFuel {
            fuel_used: 5_000,
            memory_bytes: 0,
        });
        let receipt = Receipt::new(9, "cd34", 5_000, &outcome, &signer.verifying_key());
        assert_eq!(receipt.result, TaskResult::OutOfFuel);
        assert_eq!(receipt.fuel_used, 5_000);
        let signed = signer.sign(receipt).expect("signs");
        assert_eq!(verify(&signed, &signer.verifying_key()), Ok(()));
    }
}
