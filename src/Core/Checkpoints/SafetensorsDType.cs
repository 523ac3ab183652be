using TorchSharp;

namespace LoraPS.Checkpoints;

/// <summary>
/// Element types of the safetensors format. Each member's name is exactly the string the header uses
/// (<c>"F32"</c>, <c>"BF16"</c>, <c>"F8_E4M3"</c>…), so <see cref="Enum.ToString()"/> gives the header spelling.
/// </summary>
public enum SafetensorsDType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, U16, U32, U64, F8_E4M3, F8_E5M2 }

/// <summary>Sizes, header spellings and TorchSharp equivalents of <see cref="SafetensorsDType"/>.</summary>
public static class SafetensorsDTypes
{
    // Exact, case-sensitive spellings: Enum.TryParse would also accept "f32", "3" or " F32", which the format does not.
    private static readonly Dictionary<string, SafetensorsDType> ByHeaderName =
        Enum.GetValues<SafetensorsDType>().ToDictionary(d => d.ToString(), d => d, StringComparer.Ordinal);

    /// <summary>The header spelling of every dtype this reader understands, for error messages.</summary>
    public static string KnownNames { get; } = string.Join(", ", ByHeaderName.Keys);

    /// <summary>Bytes per element.</summary>
    public static int SizeOf(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.BOOL or SafetensorsDType.U8 or SafetensorsDType.I8
            or SafetensorsDType.F8_E4M3 or SafetensorsDType.F8_E5M2 => 1,
        SafetensorsDType.I16 or SafetensorsDType.U16 or SafetensorsDType.F16 or SafetensorsDType.BF16 => 2,
        SafetensorsDType.I32 or SafetensorsDType.U32 or SafetensorsDType.F32 => 4,
        SafetensorsDType.I64 or SafetensorsDType.U64 or SafetensorsDType.F64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Not a safetensors dtype."),
    };

    /// <summary>Parses a header dtype string exactly as the format spells it.</summary>
    public static bool TryParse(string? headerName, out SafetensorsDType dtype)
    {
        if (headerName is not null && ByHeaderName.TryGetValue(headerName, out dtype))
        {
            return true;
        }
        dtype = default;
        return false;
    }

    /// <summary>
    /// The TorchSharp element type with the same bit layout. False for U16/U32/U64 and the FP8 types, which
    /// TorchSharp 0.107 has no <see cref="torch.ScalarType"/> for; their bytes can still be read raw.
    /// </summary>
    public static bool TryGetScalarType(this SafetensorsDType dtype, out torch.ScalarType scalarType)
    {
        (bool ok, scalarType) = dtype switch
        {
            SafetensorsDType.F64 => (true, torch.ScalarType.Float64),
            SafetensorsDType.F32 => (true, torch.ScalarType.Float32),
            SafetensorsDType.F16 => (true, torch.ScalarType.Float16),
            SafetensorsDType.BF16 => (true, torch.ScalarType.BFloat16),
            SafetensorsDType.I64 => (true, torch.ScalarType.Int64),
            SafetensorsDType.I32 => (true, torch.ScalarType.Int32),
            SafetensorsDType.I16 => (true, torch.ScalarType.Int16),
            SafetensorsDType.I8 => (true, torch.ScalarType.Int8),
            SafetensorsDType.U8 => (true, torch.ScalarType.Byte),
            SafetensorsDType.BOOL => (true, torch.ScalarType.Bool),
            _ => (false, default(torch.ScalarType)),
        };
        return ok;
    }

    /// <summary>The safetensors dtype a tensor of <paramref name="scalarType"/> is stored as; false for complex and quantized types.</summary>
    public static bool TryFromScalarType(torch.ScalarType scalarType, out SafetensorsDType dtype)
    {
        (bool ok, dtype) = scalarType switch
        {
            torch.ScalarType.Float64 => (true, SafetensorsDType.F64),
            torch.ScalarType.Float32 => (true, SafetensorsDType.F32),
            torch.ScalarType.Float16 => (true, SafetensorsDType.F16),
            torch.ScalarType.BFloat16 => (true, SafetensorsDType.BF16),
            torch.ScalarType.Int64 => (true, SafetensorsDType.I64),
            torch.ScalarType.Int32 => (true, SafetensorsDType.I32),
            torch.ScalarType.Int16 => (true, SafetensorsDType.I16),
            torch.ScalarType.Int8 => (true, SafetensorsDType.I8),
            torch.ScalarType.Byte => (true, SafetensorsDType.U8),
            torch.ScalarType.Bool => (true, SafetensorsDType.BOOL),
            _ => (false, default(SafetensorsDType)),
        };
        return ok;
    }

    /// <summary>
    /// Position in the Rust crate's <c>Dtype</c> enum. Its writer sorts tensors by this, descending, then by name;
    /// the enum is declared "in increasing alignment order", so big elements come first and stay aligned.
    /// It is not just the size: F64 &lt; I64 &lt; U64 and F16 &lt; BF16, so sorting by size alone would not be byte-identical.
    /// </summary>
    internal static int RustEnumOrder(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.BOOL => 0,
        SafetensorsDType.U8 => 1,
        SafetensorsDType.I8 => 2,
        SafetensorsDType.F8_E5M2 => 3,
        SafetensorsDType.F8_E4M3 => 4,
        SafetensorsDType.I16 => 5,
        SafetensorsDType.U16 => 6,
        SafetensorsDType.F16 => 7,
        SafetensorsDType.BF16 => 8,
        SafetensorsDType.I32 => 9,
        SafetensorsDType.U32 => 10,
        SafetensorsDType.F32 => 11,
        SafetensorsDType.F64 => 12,
        SafetensorsDType.I64 => 13,
        SafetensorsDType.U64 => 14,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Not a safetensors dtype."),
    };
}
