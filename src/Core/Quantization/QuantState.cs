using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Quantization;

/// <summary>
/// Everything besides the codes that is needed to dequantize a <see cref="QuantizedTensor"/>: the equivalent of
/// bitsandbytes' <c>QuantState</c> (4-bit) and of <c>Int8Params.SCB</c> (Int8). It owns its tensors.
/// </summary>
public sealed class QuantState : IDisposable
{
    private readonly long[] shape;
    private bool disposed;

    internal QuantState(QuantType quantType, int blockSize, long[] shape, ScalarType dtype, Tensor absmax, Tensor? code, NestedQuantState? nested)
    {
        QuantType = quantType;
        BlockSize = blockSize;
        this.shape = shape;
        DType = dtype;
        Absmax = absmax;
        Code = code;
        Nested = nested;
    }

    public QuantType QuantType { get; }

    /// <summary>Consecutive elements of the flattened tensor that share one absmax: 64 by default for 4-bit; for Int8 the row length.</summary>
    public int BlockSize { get; }

    /// <summary>Shape of the original (and the dequantized) tensor.</summary>
    public IReadOnlyList<long> Shape => shape;

    /// <summary>Number of elements of the original tensor.</summary>
    public long NumElements => shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>The dtype dequantization produces by default: the dtype of the weight that was quantized.</summary>
    public ScalarType DType { get; }

    /// <summary>Number of absmax values: one per block (4-bit) or per row (Int8).</summary>
    public long BlockCount => Absmax.shape[0];

    /// <summary>
    /// Per-block absmax: float32 [blocks]; with double quantization the uint8 codes of <c>absmax − offset</c> in the
    /// signed dynamic map (see <see cref="Nested"/>); for Int8 the float32 row absmax (bnb's <c>SCB</c>).
    /// </summary>
    public Tensor Absmax { get; }

    /// <summary>The float32 [16] codebook of a 4-bit type (bnb's <c>quant_map</c>); null for Int8.</summary>
    public Tensor? Code { get; }

    /// <summary>The second-level state when the absmax values are themselves quantized (QLoRA double quantization).</summary>
    public NestedQuantState? Nested { get; }

    public bool IsDoubleQuantized => Nested is not null;

    /// <summary>Bytes held for dequantization besides the codes: absmax, plus nested absmax and the 4-byte offset.</summary>
    public long StorageBytes => Absmax.NumberOfElements * Absmax.ElementSize + (Nested is { } n ? n.Absmax.NumberOfElements * 4 + 4 : 0);

    /// <summary>
    /// The float32 absmax of every block, as a new tensor: <see cref="Absmax"/> itself copied, or with double quantization
    /// <c>code8[q] · nestedAbsmax[block / 256] + offset</c> computed in float32 as bnb does.
    /// </summary>
    public Tensor DequantizeAbsmax()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        using var noGrad = no_grad();
        if (Nested is null)
        {
            return Absmax.to_type(ScalarType.Float32, copy: true);
        }
        var absmax = empty(Absmax.shape[0], ScalarType.Float32, Absmax.device);
        BlockwiseKernels.Dequantize8bit(Absmax.view(-1), Nested.Absmax, Nested.BlockSize, Nested.Code, absmax, Nested.Offset);
        return absmax;
    }

    public void Dispose()
    {
        if (disposed)
        {
            return;
        }
        disposed = true;
        Absmax.Dispose();
        Code?.Dispose();
        Nested?.Dispose();
    }
}

/// <summary>
/// The second level of QLoRA's double quantization: the first-level absmax values minus their mean
/// (<see cref="Offset"/>), quantized in blocks of 256 with the signed 8-bit dynamic map. bnb's <c>state2</c> plus
/// <c>offset</c>.
/// </summary>
public sealed class NestedQuantState : IDisposable
{
    internal NestedQuantState(Tensor absmax, Tensor code, int blockSize, float offset)
    {
        Absmax = absmax;
        Code = code;
        BlockSize = blockSize;
        Offset = offset;
    }

    /// <summary>float32 [ceil(blocks / 256)]: the absmax of each 256-block of centred first-level absmax values.</summary>
    public Tensor Absmax { get; }

    /// <summary>float32 [256]: the 8-bit map (bnb's <c>nested_quant_map</c>, the signed dynamic map).</summary>
    public Tensor Code { get; }

    /// <summary>First-level absmax values per second-level block (256).</summary>
    public int BlockSize { get; }

    /// <summary>The mean of the first-level absmax values, subtracted before quantizing them.</summary>
    public float Offset { get; }

    public void Dispose()
    {
        Absmax.Dispose();
        Code.Dispose();
    }
}
