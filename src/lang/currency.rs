//! ISO 4217 currency codes, for the `currency` value check.

/// Every active ISO 4217 alphabetic code (list one, 2024), sorted.
const CODES: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG ZWL";

/// Whether `code` (any case) is an ISO 4217 alphabetic currency code.
pub fn is_iso_4217(code: &str) -> bool {
    code.len() == 3 && crate::lang::country::holds(CODES, code)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_every_listed_code() {
        for code in super::CODES.split(' ') {
            assert!(super::is_iso_4217(code), "{code}");
            assert!(super::is_iso_4217(&code.to_ascii_lowercase()), "{code}");
        }
        let codes: Vec<&str> = super::CODES.split(' ').collect();
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "the list is sorted");
    }

    #[test]
    fn knows_codes() {
        assert!(super::is_iso_4217("USD"));
        assert!(super::is_iso_4217("eur"));
        assert!(!super::is_iso_4217("US"));
        assert!(!super::is_iso_4217("BTC"));
        assert!(!super::is_iso_4217("USDT"));
    }
}
