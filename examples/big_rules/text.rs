//! The text of the generated webhooks (shared with `lang::parse`'s tests, which hold the
//! quick parser to the grammar on it).

/// The variable one webhook in seven signs with.
pub const SECRET: &str = "BIG_RULES_SECRET";

/// The webhooks numbered `range`: varied events, `when` conditions of every kind, one in five
/// with a regex, headers, settings, one in seven signed, one in fifty disabled; about 330
/// bytes each.
pub fn webhooks(range: std::ops::Range<usize>) -> String {
    const SOURCES: [&str; 6] = ["facebook", "google", "tiktok", "bing", "newsletter", "x"];
    const COUNTRIES: [&str; 8] = ["US", "CA", "GB", "DE", "FR", "AT", "CH", "NL"];
    const DEVICES: [&str; 3] = ["mobile", "tablet", "desktop"];
    let mut text = String::with_capacity(range.len() * 400);
    for i in range {
        let on = match i % 4 {
            0 => "conversion".to_owned(),
            1 => "conversion, refund".to_owned(),
            2 => format!("event {}", 1 + i % 10),
            _ => "refund".to_owned(),
        };
        text.push_str(&format!(
            "# generated webhook {i}\nwebhook w{i:05} {{\n    on {on}\n"
        ));
        text.push_str(&format!(
            "    when first.utm_source equals \"{}{}\"\n",
            SOURCES[i % SOURCES.len()],
            i % 50
        ));
        match i % 3 {
            0 => text.push_str(&format!("    when revenue greater than {}\n", i % 500)),
            1 => text.push_str(&format!(
                "    when last.country in [\"{}\", \"{}\"]\n",
                COUNTRIES[i % 8],
                COUNTRIES[(i + 3) % 8]
            )),
            _ => text.push_str(&format!(
                "    when utm_campaign starts with \"camp{}\" or deviceType equals \"{}\"\n",
                i % 31,
                DEVICES[i % 3]
            )),
        }
        if i % 5 == 0 {
            text.push_str(&format!(
                "    when utm_content matches \"^ad-{}[0-9]*$\"\n",
                i % 13
            ));
        }
        if i % 4 == 1 {
            text.push_str("    when isFromGoogleAds and qualityScore at least 40\n");
        }
        text.push_str(&format!(
            "    post \"https://hooks{}.example.com/t/{i}?amount=[revenue]&txn=[transaction]&src=[first.utm_source]\"\n",
            i % 20
        ));
        text.push_str(&format!(
            "    header \"X-Team\" = \"team{}\"\n    timeout {}s\n    retries {}\n",
            i % 7,
            1 + i % 5,
            i % 9
        ));
        if i % 7 == 0 {
            text.push_str(&format!("    secret env(\"{SECRET}\")\n"));
        }
        if i % 50 == 49 {
            text.push_str("    disabled\n");
        }
        text.push_str("}\n\n");
    }
    text
}
