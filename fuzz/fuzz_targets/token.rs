//! Token reading: the room tokens (HS256 JWT) and the private events' playback
//! tokens (ES384), from anything a client can put in a header or a query string.
//! Nothing may panic, and nothing but a token signed with the key is accepted.
#![no_main]

use casecast_signaling::TokenKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let key = TokenKey::new("fuzz-secret-0123456789abcdef");
    if let Ok(claims) = key.verify(text, 0) {
        // Only what the key signed verifies: signing the claims again gives a token
        // the key accepts too, and the credential never repeats the token.
        let again = key.sign(&claims);
        assert_eq!(key.verify(&again, 0).ok(), Some(claims.clone()));
        assert!(!casecast_signaling::token::credential(text, &claims).contains(text) || text.len() < 8);
    }
    let _ = casecast_signaling::whip::bearer_token(text);
    if let Ok(der) = casecast_signaling::playback::PlaybackKey::generate()
        && let Ok(playback) = casecast_signaling::playback::PlaybackKey::from_pkcs8(&der)
    {
        assert!(playback.verify(text, 0).is_err(), "a made-up playback token verified");
    }
});
