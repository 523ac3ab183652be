using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Quantization;

/// <summary>Which 256-entry bitsandbytes map an 8-bit blockwise tensor uses.</summary>
public enum DynamicMap
{
    /// <summary><c>create_dynamic_map(signed=True)</c>, [-0.993, 1]: double quantization, Adam's first moment.</summary>
    Signed,

    /// <summary><c>create_dynamic_map(signed=False)</c>, [0, 1]: Adam's second moment (never negative).</summary>
    Unsigned,
}

/// <summary>
/// A tensor stored as one uint8 code per element in a 256-entry dynamic map plus one float32 absmax per block of the
/// flattened tensor: bitsandbytes' <c>quantize_blockwise</c> / <c>dequantize_blockwise</c>, the format of 8-bit
/// optimizer states (<c>Adam8bit</c>: blocks of 256, signed map for m, unsigned for v). The buffers are allocated once
/// and requantized in place on every optimizer step.
/// </summary>
public sealed class Blockwise8bitTensor : IDisposable
{
    private readonly long[] shape;
    private readonly bool owns = true;
    private bool disposed;

    /// <summary>A view over existing codes and absmax tensors (an optimizer's saved state), which it does not own.</summary>
    private Blockwise8bitTensor(Tensor codes, Tensor absmax, DynamicMap map, int blockSize)
    {
        shape = codes.shape;
        Map = map;
        BlockSize = blockSize;
        Codes = codes;
        Absmax = absmax;
        owns = false;
        long n = shape.Aggregate(1L, (a, b) => a * b);
        if (codes.dtype != ScalarType.Byte || absmax.dtype != ScalarType.Float32 || absmax.numel() != (n + blockSize - 1) / blockSize)
            throw new ArgumentException($"8-bit state needs uint8 codes and {(n + blockSize - 1) / blockSize} float32 absmax values; got {codes.dtype} codes and {absmax.numel()} {absmax.dtype} absmax values.");
    }

    /// <summary>
    /// Reads and requantizes into <paramref name="codes"/> (uint8, any shape) and <paramref name="absmax"/> (float32,
    /// one per block) in place; disposing the view leaves them alone.
    /// </summary>
    internal static Blockwise8bitTensor Over(Tensor codes, Tensor absmax, DynamicMap map, int blockSize) => new(codes, absmax, map, blockSize);

    private Blockwise8bitTensor(long[] shape, DynamicMap map, int blockSize, Device device)
    {
        BlockwiseKernels.CheckBlockSize(blockSize, nameof(blockSize));
        if (shape.Length == 0 || shape.Any(d => d <= 0))
        {
            throw new ArgumentException($"An 8-bit blockwise tensor needs a non-empty shape with positive sizes, not [{string.Join(", ", shape)}].", nameof(shape));
        }
        if (map is not (DynamicMap.Signed or DynamicMap.Unsigned))
        {
            throw new ArgumentOutOfRangeException(nameof(map), map, "Use DynamicMap.Signed or DynamicMap.Unsigned.");
        }
        this.shape = shape;
        Map = map;
        BlockSize = blockSize;
        long n = shape.Aggregate(1L, (a, b) => a * b);
        Codes = Codebooks.Detached(zeros(shape, ScalarType.Byte, device));
        Absmax = Codebooks.Detached(zeros((n + blockSize - 1) / blockSize, ScalarType.Float32, device));
    }

    /// <summary>
    /// A state that dequantizes to zeros, like bnb's freshly allocated 8-bit optimizer state (codes 0, absmax 0).
    /// </summary>
    public static Blockwise8bitTensor Zeros(long[] shape, DynamicMap map, int blockSize, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(shape);
        return new Blockwise8bitTensor((long[])shape.Clone(), map, blockSize, device ?? CPU);
    }

    /// <summary>Quantizes <paramref name="values"/> (float32/bfloat16/float16) into a new 8-bit blockwise tensor.</summary>
    public static Blockwise8bitTensor Quantize(Tensor values, DynamicMap map, int blockSize)
    {
        ArgumentNullException.ThrowIfNull(values);
        var result = new Blockwise8bitTensor(values.shape, map, blockSize, values.device);
        try
        {
            result.Requantize(values);
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    public IReadOnlyList<long> Shape => shape;

    public DynamicMap Map { get; }

    /// <summary>Elements per absmax (256 for bnb's 8-bit optimizers).</summary>
    public int BlockSize { get; }

    /// <summary>uint8 codes, the shape of the values.</summary>
    public Tensor Codes { get; }

    /// <summary>float32 [ceil(n / BlockSize)]: max |value| of each block of the flattened tensor.</summary>
    public Tensor Absmax { get; }

    /// <summary>The map's 256 float32 values.</summary>
    public IReadOnlyList<float> MapValues => Map == DynamicMap.Signed ? Codebooks.DynamicSigned : Codebooks.DynamicUnsigned;

    /// <summary>Codes plus absmax, in bytes: about 1 + 4/256 bytes per element.</summary>
    public long StorageBytes => Codes.NumberOfElements + Absmax.NumberOfElements * 4;

    /// <summary>
    /// Overwrites the codes and absmax with the quantization of <paramref name="values"/> (same shape): per block
    /// <c>absmax = max|v|</c>, code = nearest map entry to <c>v / absmax</c>. Values below 0 with the unsigned map clamp
    /// to its smallest entry, 0.
    /// </summary>
    public void Requantize(Tensor values)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentNullException.ThrowIfNull(values);
        CheckCompatible(values, "values");
        QuantizedTensor.CheckFloating(values.dtype, nameof(values), "Cannot quantize a " + values.dtype + " tensor");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var flatCodes = Codes.view(-1);
        var search = Map == DynamicMap.Signed ? NearestCode.For("dynamic", Codebooks.DynamicSigned) : NearestCode.For("udynamic", Codebooks.DynamicUnsigned);
        BlockwiseKernels.Quantize(values.detach().reshape(-1), BlockSize, search, Absmax,
            (start, codes) => flatCodes.narrow(0, start, codes.shape[0]).copy_(codes),
            $"the {values.dtype} tensor of shape [{string.Join(", ", values.shape)}]");
    }

    /// <summary>Writes <c>map[code] · absmax[block]</c> (float32, rounded once) into <paramref name="output"/> of the same shape.</summary>
    public void DequantizeInto(Tensor output)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentNullException.ThrowIfNull(output);
        CheckCompatible(output, "output");
        QuantizedTensor.CheckFloating(output.dtype, nameof(output), "Cannot dequantize into a " + output.dtype + " tensor");
        if (!output.is_contiguous())
        {
            throw new ArgumentException("The output buffer must be contiguous.", nameof(output));
        }
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var table = Codebooks.CachedTensor(Map == DynamicMap.Signed ? "dynamic" : "udynamic", MapValues, Codes.device);
        BlockwiseKernels.Dequantize8bit(Codes.view(-1), Absmax, BlockSize, table, output.view(-1));
    }

    /// <summary>A new float32 tensor of the dequantized values.</summary>
    public Tensor Dequantize()
    {
        var output = empty(shape, ScalarType.Float32, Codes.device);
        DequantizeInto(output);
        return output;
    }

    private void CheckCompatible(Tensor t, string name)
    {
        if (!t.shape.SequenceEqual(shape))
        {
            throw new ArgumentException($"The {name} tensor has shape [{string.Join(", ", t.shape)}] but this 8-bit state has shape [{string.Join(", ", shape)}].", name);
        }
        if (t.device.ToString() != Codes.device.ToString())
        {
            throw new ArgumentException($"The {name} tensor is on {t.device} but this 8-bit state is on {Codes.device}.", name);
        }
    }

    public void Dispose()
    {
        if (disposed)
        {
            return;
        }
        disposed = true;
        if (!owns) return;
        Codes.Dispose();
        Absmax.Dispose();
    }
}

/// <summary>
/// The conventions of bitsandbytes' 8-bit optimizers (<c>Optimizer2State</c> with <c>optim_bits=8</c>): blockwise
/// states in blocks of 256, m with the signed dynamic map and v with the unsigned one, and fp32 state for parameters
/// smaller than <see cref="MinElementsFor8bit"/>. The update itself (dequantize, fp32 Adam, requantize) is the optimizer's.
/// </summary>
public static class OptimizerState8bit
{
    /// <summary>bnb's blockwise optimizer block size.</summary>
    public const int BlockSize = 256;

    /// <summary>bnb's <c>min_8bit_size</c>: smaller parameters keep 32-bit state.</summary>
    public const long MinElementsFor8bit = 4096;

    /// <summary>True when bnb would keep this parameter's state in 8 bits.</summary>
    public static bool Uses8bitState(long parameterElements) => parameterElements >= MinElementsFor8bit;

    /// <summary>A zero first-moment (m) state for a parameter of <paramref name="shape"/>: signed map, blocks of 256.</summary>
    public static Blockwise8bitTensor FirstMoment(long[] shape, Device? device = null) => Blockwise8bitTensor.Zeros(shape, DynamicMap.Signed, BlockSize, device);

    /// <summary>A zero second-moment (v) state for a parameter of <paramref name="shape"/>: unsigned map, blocks of 256.</summary>
    public static Blockwise8bitTensor SecondMoment(long[] shape, Device? device = null) => Blockwise8bitTensor.Zeros(shape, DynamicMap.Unsigned, BlockSize, device);
}
