//! Azure's clouds: the host names a region's Speech services and token service have. A leaf:
//! the relay (where it connects), the key mode's token endpoint and the demo page's CSP read it.

/// The host-name suffixes of one Azure cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cloud {
    /// After `<region>.stt.` / `.tts.` / `.s2s.`: where the Speech SDK connects.
    pub speech: &'static str,
    /// After `<region>.`: the `issueToken` service (`/sts/v1.0/issueToken`).
    pub sts: &'static str,
}

/// The cloud of `region` (lower-case or not), as the Speech SDK decides it
/// (`ConnectionFactoryBase.getHostSuffix`: `china*` is Azure China, `usgov*` Azure Government)
/// with the token hosts of learn.microsoft.com's "Speech service in sovereign clouds".
pub fn cloud_of(region: &str) -> Cloud {
    let region = region.to_ascii_lowercase();
    if region.starts_with("china") {
        Cloud {
            speech: "speech.azure.cn",
            sts: "api.cognitive.azure.cn",
        }
    } else if region.starts_with("usgov") {
        Cloud {
            speech: "speech.azure.us",
            sts: "api.cognitive.microsoft.us",
        }
    } else {
        Cloud {
            speech: "speech.microsoft.com",
            sts: "api.cognitive.microsoft.com",
        }
    }
}
