/// What the walker does after a `pud_entry` or `pmd_entry` handler returned 0.
///
/// Models the kernel's `enum page_walk_action`. The walker resets the action
/// to `.subtree` before each PUD and PMD handler call; the handler changes
/// it to steer the walk. Levels above the PUD ignore it, as in the kernel.
public enum WalkAction: Sendable, Hashable {
    /// Descend into the entry's lower table (`ACTION_SUBTREE`).
    case subtree
    /// Skip the entry's lower table and move to the next entry
    /// (`ACTION_CONTINUE`).
    case `continue`
    /// Read the same entry again and call the handler again
    /// (`ACTION_AGAIN`); also set by the walker when a PTE table vanished
    /// between reading the PMD and locking the table.
    case again
}
