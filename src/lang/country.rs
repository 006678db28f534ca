//! ISO 3166-1 alpha-2 country codes, for the `country` value check.

/// Every officially assigned ISO 3166-1 alpha-2 code, sorted.
const CODES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// Whether `code` (any case) is an assigned ISO 3166-1 alpha-2 code.
pub fn is_iso_alpha2(code: &str) -> bool {
    code.len() == 2 && holds(CODES, code)
}

/// Whether `codes` (sorted codes of one length, one space between them) holds `code`, in any
/// case: a binary search, as a rule set checks a code per `country` or `currency` value.
pub(crate) fn holds(codes: &str, code: &str) -> bool {
    let code = code.to_ascii_uppercase();
    let step = code.len() + 1;
    let (mut low, mut high) = (0, codes.len().div_ceil(step));
    while low < high {
        let middle = (low + high) / 2;
        let Some(at) = codes.get(middle * step..middle * step + code.len()) else {
            return false;
        };
        match at.cmp(code.as_str()) {
            std::cmp::Ordering::Less => low = middle + 1,
            std::cmp::Ordering::Greater => high = middle,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_every_listed_code() {
        for code in super::CODES.split(' ') {
            assert!(super::is_iso_alpha2(code), "{code}");
            assert!(super::is_iso_alpha2(&code.to_ascii_lowercase()), "{code}");
        }
        let codes: Vec<&str> = super::CODES.split(' ').collect();
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "the list is sorted");
    }

    #[test]
    fn knows_codes() {
        assert!(super::is_iso_alpha2("US"));
        assert!(super::is_iso_alpha2("de"));
        assert!(!super::is_iso_alpha2("UK"));
        assert!(!super::is_iso_alpha2("USA"));
    }
}
