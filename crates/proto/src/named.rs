//! `named!`: an enum whose every value has one name, the same on the wire (serde), in
//! the catalog and in front of people (`Display`), so that code compares states as
//! types while tables and `--json` keep the words users have always seen.
//!
//! The generated `Display` pads (`{:<12}` lines columns up), and `parse` is the one
//! way back from a stored name; what it does not know is the caller's error to name.

/// Declares a `Copy` enum with a name per variant: `as_str`, `parse`, `ALL`, serde
/// under those names and a padding `Display`.
macro_rules! named {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
        )]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every value, in the order declared.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name on the wire, in the catalog and for people.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            /// The value whose name is `text`; `None` for a name this build does not
            /// know (the caller says where it came from).
            pub fn parse(text: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

pub(crate) use named;

#[cfg(test)]
mod tests {
    use crate::{RunOutcome, ServiceState};

    #[test]
    fn names_are_the_words_people_see_on_the_wire_and_in_tables() {
        assert_eq!(ServiceState::NotStopped.to_string(), "NOT STOPPED");
        assert_eq!(format!("[{:<8}]", RunOutcome::Ok), "[ok      ]");
        assert_eq!(RunOutcome::parse("skipped"), Some(RunOutcome::Skipped));
        assert_eq!(RunOutcome::parse("Skipped"), None);
        for state in ServiceState::ALL {
            assert_eq!(ServiceState::parse(state.as_str()), Some(*state));
        }
    }
}
