//! DIMSE status codes (PS3.7 Annex C) with their names, so that responses
//! and logs speak the standard's words.

/// A DIMSE Status (0000,0900) value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Status(pub u16);

/// The category PS3.7 C.1 assigns to a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    Success,
    Pending,
    Cancel,
    Warning,
    Failure,
}

impl Status {
    pub const SUCCESS: Status = Status(0x0000);
    pub const PENDING: Status = Status(0xFF00);
    /// Pending, with one or more optional keys not supported (C-FIND).
    pub const PENDING_OPTIONAL_KEYS: Status = Status(0xFF01);
    pub const CANCEL: Status = Status(0xFE00);
    /// Sub-operations complete, one or more failures or warnings (C-MOVE/C-GET).
    pub const SUB_OPERATIONS_WARNING: Status = Status(0xB000);
    pub const COERCION_OF_DATA_ELEMENTS: Status = Status(0xB000);
    pub const ELEMENTS_DISCARDED: Status = Status(0xB006);
    pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING: Status = Status(0xB007);
    pub const OUT_OF_RESOURCES: Status = Status(0xA700);
    /// C-MOVE: unable to calculate number of matches.
    pub const OUT_OF_RESOURCES_MATCHES: Status = Status(0xA701);
    /// C-MOVE/C-GET: unable to perform sub-operations.
    pub const OUT_OF_RESOURCES_SUB_OPERATIONS: Status = Status(0xA702);
    /// C-MOVE: move destination unknown.
    pub const MOVE_DESTINATION_UNKNOWN: Status = Status(0xA801);
    pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS: Status = Status(0xA900);
    pub const IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS: Status = Status(0xA900);
    pub const CANNOT_UNDERSTAND: Status = Status(0xC000);
    pub const SOP_CLASS_NOT_SUPPORTED: Status = Status(0x0122);
    pub const NOT_AUTHORIZED: Status = Status(0x0124);
    pub const DUPLICATE_SOP_INSTANCE: Status = Status(0x0111);
    pub const PROCESSING_FAILURE: Status = Status(0x0110);

    pub fn category(self) -> Category {
        match self.0 {
            0x0000 => Category::Success,
            0xFF00 | 0xFF01 => Category::Pending,
            0xFE00 => Category::Cancel,
            0x0001 | 0x0107 | 0x0116 | 0xB000..=0xBFFF => Category::Warning,
            _ => Category::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_follow_ps3_7_annex_c() {
        assert_eq!(Status::SUCCESS.category(), Category::Success);
        assert_eq!(Status::PENDING_OPTIONAL_KEYS.category(), Category::Pending);
        assert_eq!(Status::CANCEL.category(), Category::Cancel);
        assert_eq!(Status::SUB_OPERATIONS_WARNING.category(), Category::Warning);
        assert_eq!(Status::MOVE_DESTINATION_UNKNOWN.category(), Category::Failure);
        assert_eq!(Status::OUT_OF_RESOURCES.category(), Category::Failure);
        assert_eq!(Status(0xC123).category(), Category::Failure);
    }
}
