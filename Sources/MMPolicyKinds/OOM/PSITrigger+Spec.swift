import MMPolicyCore

extension PSITrigger {
    /// Arms a trigger from a manifest's `[trigger] psi` spec.
    convenience init(spec: PSITriggerSpec, path: String) throws(SystemCallError) {
        try self.init(path: path, kind: spec.full ? .full : .some,
                      stallMicroseconds: spec.stallMicroseconds, windowMicroseconds: spec.windowMicroseconds)
    }
}
