namespace LoraPS.Quantization;

/// <summary>
/// How a model's frozen linear weights are stored when it is loaded for QLoRA: the format, double quantization and block
/// size, as bitsandbytes' <c>BitsAndBytesConfig</c> (<c>bnb_4bit_quant_type</c>, <c>bnb_4bit_use_double_quant</c>) sets them.
/// </summary>
/// <param name="Type">NF4, FP4 or Int8.</param>
/// <param name="DoubleQuant">Quantize the per-block absmax values too (QLoRA's DQ; NF4/FP4 only).</param>
/// <param name="BlockSize">Weights per absmax for NF4/FP4: 64, as bitsandbytes.</param>
public sealed record QuantizationOptions(QuantType Type, bool DoubleQuant = false, int BlockSize = QuantizedTensor.DefaultBlockSize)
{
    /// <summary>The names <see cref="Parse"/> accepts, as <c>-Quantize</c> takes them.</summary>
    public static IReadOnlyList<string> Names { get; } = ["nf4", "nf4-dq", "fp4", "fp4-dq", "int8"];

    /// <summary>
    /// Module names (a whole path or its last segments) kept in the compute dtype. Null keeps the output head
    /// (<c>lm_head</c>, <c>score</c>, <c>classifier</c>) unquantized, as transformers' bitsandbytes integration does.
    /// Embeddings and norms are never quantized: they are not linear layers.
    /// </summary>
    public IReadOnlyList<string>? SkipModules { get; init; }

    /// <summary>The output heads left unquantized when <see cref="SkipModules"/> is null.</summary>
    public static IReadOnlyList<string> DefaultSkipModules { get; } = ["lm_head", "score", "classifier"];

    /// <summary><c>nf4</c>, <c>nf4-dq</c>, <c>fp4</c>, <c>fp4-dq</c> or <c>int8</c>.</summary>
    public string Name => NameOf(Type, DoubleQuant);

    /// <summary>Parses one of <see cref="Names"/> (any case).</summary>
    /// <exception cref="ArgumentException">Not one of the names; the message lists them.</exception>
    public static QuantizationOptions Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.Trim().ToLowerInvariant() switch
        {
            "nf4" => new(QuantType.NF4),
            "nf4-dq" => new(QuantType.NF4, DoubleQuant: true),
            "fp4" => new(QuantType.FP4),
            "fp4-dq" => new(QuantType.FP4, DoubleQuant: true),
            "int8" => new(QuantType.Int8),
            _ => throw new ArgumentException($"Unknown quantization type '{name}'. Use one of: {string.Join(", ", Names)}.", nameof(name)),
        };
    }

    /// <summary>Throws if the combination is not one bitsandbytes has (double quantization of Int8, a bad block size).</summary>
    public void Validate()
    {
        if (Type == QuantType.Int8 && DoubleQuant)
            throw new ArgumentException("Double quantization applies to NF4/FP4 block constants; Int8 has one absmax per row. Use nf4-dq or fp4-dq.");
        if (Type.Is4Bit()) BlockwiseKernels.CheckBlockSize(BlockSize, nameof(BlockSize));
    }

    /// <summary>The user-facing name of a stored format.</summary>
    public static string NameOf(QuantType type, bool doubleQuant) => type.ToBitsAndBytesName() + (doubleQuant ? "-dq" : "");

    public override string ToString() => Name;
}
