import MMPolicyCore

extension KindRegistry {
    /// Every kind this build of mmpolicy runs. A new kind is a folder beside
    /// OOM/ and one more definition here.
    public static let builtIn = KindRegistry([OOMKind(), TieringKind()])
}
