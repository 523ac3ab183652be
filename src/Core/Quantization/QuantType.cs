namespace LoraPS.Quantization;

/// <summary>
/// The formats a frozen weight can be stored in, exactly as bitsandbytes defines them, so QLoRA checkpoints written by
/// Python load here and the other way round.
/// </summary>
public enum QuantType
{
    /// <summary>
    /// 4-bit NormalFloat from the QLoRA paper (bnb <c>"nf4"</c>): 16 quantiles of N(0, 1) scaled to [-1, 1], one absmax
    /// per block of 64 weights. The QLoRA recipe uses it with double quantization.
    /// </summary>
    NF4,

    /// <summary>
    /// bitsandbytes' 4-bit float (bnb <c>"fp4"</c>): sign, 2 exponent bits (bias 2), 1 mantissa bit, one absmax per
    /// block. Note that it, not NF4, is the default of bnb's <c>Linear4bit</c> and of HF's <c>BitsAndBytesConfig</c>.
    /// </summary>
    FP4,

    /// <summary>
    /// LLM.int8() weight storage (bnb <c>Int8Params</c>): one int8 per weight and one float32 absmax per row
    /// (<c>CB</c> and <c>SCB</c>). Outlier decomposition happens on activations at matmul time, not in the stored weight.
    /// </summary>
    Int8,
}

/// <summary>Names and facts about <see cref="QuantType"/> values.</summary>
public static class QuantTypes
{
    /// <summary>The name bitsandbytes uses: <c>nf4</c>, <c>fp4</c>, <c>int8</c>.</summary>
    public static string ToBitsAndBytesName(this QuantType type) => type switch
    {
        QuantType.NF4 => "nf4",
        QuantType.FP4 => "fp4",
        QuantType.Int8 => "int8",
        _ => throw Unknown(type),
    };

    /// <summary>True for the blockwise 4-bit formats (NF4, FP4).</summary>
    public static bool Is4Bit(this QuantType type) => type switch
    {
        QuantType.NF4 or QuantType.FP4 => true,
        QuantType.Int8 => false,
        _ => throw Unknown(type),
    };

    /// <summary>Parses <c>nf4</c>, <c>fp4</c> or <c>int8</c> (any case), the spellings of bitsandbytes and HF configs.</summary>
    public static QuantType Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.Trim().ToLowerInvariant() switch
        {
            "nf4" => QuantType.NF4,
            "fp4" => QuantType.FP4,
            "int8" => QuantType.Int8,
            _ => throw new ArgumentException($"Unknown quantization type '{name}'. Use one of: nf4, fp4, int8.", nameof(name)),
        };
    }

    internal static ArgumentOutOfRangeException Unknown(QuantType type) =>
        new(nameof(type), type, $"Unknown quantization type {(int)type}. Use QuantType.NF4, QuantType.FP4 or QuantType.Int8.");
}
