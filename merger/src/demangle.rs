//! Demangled function names as gcov prints them (`cplus_demangle` with
//! `DMGL_PARAMS`: parameters shown; the mangled name when it is not a C++
//! symbol).

/// Demangles `name`, falling back to `name` itself (C functions, `main`,
/// anything the demangler rejects).
pub fn demangle(name: &str) -> String {
    if !name.starts_with("_Z") {
        return name.to_owned();
    }
    cpp_demangle::Symbol::new(name.as_bytes())
        .ok()
        .and_then(|s| s.demangle().ok())
        .unwrap_or_else(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::demangle;

    #[test]
    fn c_and_cpp_names() {
        assert_eq!(demangle("main"), "main");
        assert_eq!(demangle("_ZNK3BoxIiE3getEv"), "Box<int>::get() const");
        assert_eq!(demangle("_Z7throweri"), "thrower(int)");
        assert_eq!(demangle("_Zbogus"), "_Zbogus");
    }
}
