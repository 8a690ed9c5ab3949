//! Validation rules shared by the network configurations. No libtorch.

use super::error::ModelError;

/// The data facts every network needs: a positive image size and channel count.
pub(crate) fn check_data(image_size: i64, channels: i64) -> Result<(), ModelError> {
    positive("data.image_size", image_size)?;
    positive("data.channels", channels)
}

/// An error for `param` unless `value >= 1`.
pub(crate) fn positive(param: &str, value: i64) -> Result<(), ModelError> {
    if value >= 1 {
        Ok(())
    } else {
        Err(ModelError::invalid(param, format!("must be at least 1, found {value}")))
    }
}

/// The divisors of `n`, ascending (for "use one of" hints).
pub(crate) fn divisors(n: i64) -> Vec<i64> {
    let small: Vec<i64> = (1..=n).take_while(|d| d * d <= n).filter(|d| n % d == 0).collect();
    let large = small.iter().rev().map(|d| n / d).filter(|q| q * q != n);
    small.iter().copied().chain(large).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positive_names_the_parameter() {
        assert!(positive("net.depth", 1).is_ok());
        let (param, msg) = positive("net.depth", 0).unwrap_err().into_param();
        assert_eq!((param.as_str(), msg.as_str()), ("net.depth", "must be at least 1, found 0"));
        assert_eq!(check_data(32, 0).unwrap_err().into_param().0, "data.channels");
    }

    #[test]
    fn divisors_ascend() {
        assert_eq!(divisors(12), vec![1, 2, 3, 4, 6, 12]);
        assert_eq!(divisors(7), vec![1, 7]);
        assert_eq!(divisors(16), vec![1, 2, 4, 8, 16]);
        assert_eq!(divisors(1), vec![1]);
    }
}
