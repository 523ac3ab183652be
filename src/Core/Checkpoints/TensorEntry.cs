namespace LoraPS.Checkpoints;

/// <summary>
/// One tensor as a safetensors header describes it. <paramref name="Begin"/> and <paramref name="End"/> (exclusive)
/// are byte offsets relative to the start of the data buffer, which follows the header, not to the start of the file.
/// </summary>
public sealed record TensorEntry(string Name, SafetensorsDType DType, long[] Shape, long Begin, long End)
{
    /// <summary>Bytes the tensor occupies in the file.</summary>
    public long ByteLength => End - Begin;

    /// <summary>Number of elements (1 for a scalar, 0 when any dimension is 0).</summary>
    public long ElementCount => ByteLength / DType.SizeOf();

    public override string ToString() => $"{Name}: {DType} [{string.Join(", ", Shape)}] @ [{Begin}, {End})";
}
