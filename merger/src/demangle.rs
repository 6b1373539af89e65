//! Demangled function names as gcov prints them (`cplus_demangle` with
//! `DMGL_PARAMS`: parameters shown; the mangled name when it is not a C++
//! symbol).
//!
//! `cpp_demangle` 0.5 takes the first parameter of a constructor or
//! destructor *template* for a return type and drops it
//! (`_ZN3FooC2IiEET_` comes out as `Foo::Foo<int>()`, libiberty says
//! `Foo::Foo<int>(int)`). For those symbols a `v` return type is inserted
//! where the parameters begin, which cpp_demangle then swallows instead.
//! Symbols cpp_demangle cannot parse (some GCC-specific expression
//! encodings in libstdc++ templates) fall back to the mangled name, where
//! gcov would print a demangled one.

use cpp_demangle::Symbol;

/// Demangles `name`, falling back to `name` itself (C functions, `main`,
/// anything the demangler rejects).
pub fn demangle(name: &str) -> String {
    if !name.starts_with("_Z") {
        return name.to_owned();
    }
    let Some(plain) = demangle_raw(name) else {
        return name.to_owned();
    };
    if is_structor_template(name) {
        if let Some(fixed) = with_first_parameter(name, &plain) {
            return fixed;
        }
    }
    plain
}

fn demangle_raw(name: &str) -> Option<String> {
    Symbol::new(name.as_bytes()).ok()?.demangle().ok()
}

/// A constructor or destructor name directly followed by template
/// arguments (`C2I`, `D1I`, ...).
fn is_structor_template(name: &str) -> bool {
    name.as_bytes()
        .windows(3)
        .any(|w| matches!(w, [b'C', b'1'..=b'5', b'I'] | [b'D', b'0'..=b'5', b'I']))
}

/// Finds where the parameters begin (after some `E`) by inserting a `v`
/// return type at each candidate position: the right one demangles to
/// `plain` with one more leading parameter.
fn with_first_parameter(name: &str, plain: &str) -> Option<String> {
    let open = plain.rfind('(')?;
    let (head, tail) = plain.split_at(open);
    let old_params = tail.strip_prefix('(')?;
    for (i, _) in name.match_indices('E') {
        let (before, after) = name.split_at(i + 1);
        let candidate = format!("{before}v{after}");
        let Some(out) = demangle_raw(&candidate) else {
            continue;
        };
        let Some(rest) = out.strip_prefix(head).and_then(|r| r.strip_prefix('(')) else {
            continue;
        };
        if old_params == ")" {
            if rest.ends_with(')') && rest.len() > 1 && !rest.contains(", ") {
                return Some(out);
            }
        } else if let Some(first) = rest.strip_suffix(old_params) {
            if first.ends_with(", ") && first.len() > 2 {
                return Some(out);
            }
        }
    }
    None
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
        assert_eq!(
            demangle("_Z7largestIiET_PKS0_i"),
            "int largest<int>(int const*, int)"
        );
    }

    /// The libiberty spelling of constructor templates.
    #[test]
    fn constructor_templates_keep_their_first_parameter() {
        assert_eq!(demangle("_ZN3FooC2IiEET_"), "Foo::Foo<int>(int)");
        assert_eq!(
            demangle("_ZNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEC2IS3_EEmcRKS3_"),
            "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >\
             ::basic_string<std::allocator<char> >(unsigned long, char, std::allocator<char> const&)"
        );
        // Not a template: unchanged.
        assert_eq!(demangle("_ZN7CounterC2Ev"), "Counter::Counter()");
    }
}
