using LoraPS.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Quantization;

/// <summary>
/// A frozen weight stored the way bitsandbytes stores it, plus what it takes to get it back:
/// <code>
///   NF4/FP4:  flatten → blocks of 64 → absmax_b = max|w| → code = nearest(table, w / absmax_b) → 2 codes per byte
///             dequantize: w ≈ table[code] · absmax_b            (4 + 32/64 = 4.5 bits per weight)
///   + double quantization: absmax − mean(absmax) → 8-bit dynamic codes in blocks of 256   (≈ 4.127 bits)
///   Int8:     per row: s = max|w|, q = round(w · 127/s)     dequantize: w ≈ q · s / 127     (8 + 32/cols bits)
/// </code>
/// The codes live in <see cref="Data"/>; absmax and the rest in <see cref="State"/>.
/// </summary>
/// <remarks>
/// A QLoRA forward pass dequantizes every frozen layer on every step. <see cref="DequantizeInto"/> writes into a
/// caller-owned buffer that can be reused across layers and steps: a full-precision copy kept alive per layer would
/// give back the memory the quantization saved. All tensors are owned by this object (they are detached from dispose
/// scopes, like module parameters); dispose it to free them.
/// </remarks>
public sealed class QuantizedTensor : IDisposable
{
    /// <summary>bitsandbytes' default 4-bit block size.</summary>
    public const int DefaultBlockSize = 64;

    /// <summary>Block size of the second-level (double) quantization of absmax values, fixed by bitsandbytes.</summary>
    public const int NestedBlockSize = 256;

    private bool disposed;

    internal QuantizedTensor(Tensor data, QuantState state)
    {
        Data = data;
        State = state;
    }

    /// <summary>
    /// The codes: for NF4/FP4 a uint8 [(n + 1) / 2, 1] tensor of packed nibbles, the first element of each pair in the
    /// high nibble (bnb's layout); for Int8 an int8 tensor of the original shape.
    /// </summary>
    public Tensor Data { get; }

    public QuantState State { get; }

    public QuantType QuantType => State.QuantType;

    public IReadOnlyList<long> Shape => State.Shape;

    public long NumElements => State.NumElements;

    /// <summary>The dtype <see cref="Dequantize(ScalarType?)"/> produces by default (the original weight's dtype).</summary>
    public ScalarType DType => State.DType;

    public int BlockSize => State.BlockSize;

    public bool IsDoubleQuantized => State.IsDoubleQuantized;

    public Device Device => Data.device;

    /// <summary>
    /// Bytes actually held: codes + absmax (+ nested absmax and the offset). The codebooks are shared constants and not
    /// counted (on disk bnb adds a 64-byte quant_map and a 1 KB nested map per layer).
    /// </summary>
    public long StorageBytes => Data.NumberOfElements * Data.ElementSize + State.StorageBytes;

    /// <summary><see cref="StorageBytes"/> · 8 per element: 4.5 for NF4/FP4 with blocks of 64, about 4.127 with double quantization.</summary>
    public double BitsPerParameter => 8.0 * StorageBytes / NumElements;

    public double BytesPerParameter => (double)StorageBytes / NumElements;

    /// <summary>
    /// The <see cref="StorageBytes"/> a weight of <paramref name="shape"/> would take, without quantizing it (for memory
    /// planning): (n + 1) / 2 code bytes plus 4 bytes per block, or with double quantization 1 byte per block, 4 per
    /// 256 blocks and the 4-byte offset; Int8 takes n bytes plus 4 per row.
    /// </summary>
    public static long EstimateStorageBytes(IReadOnlyList<long> shape, QuantType type, int blockSize = DefaultBlockSize, bool doubleQuant = false)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long n = shape.Aggregate(1L, (a, b) => a * b);
        if (shape.Count == 0 || shape.Any(d => d <= 0))
        {
            throw new ArgumentException("The shape must have at least one dimension and no zero or negative sizes.", nameof(shape));
        }
        return type switch
        {
            QuantType.Int8 => n + n / shape[^1] * 4,
            QuantType.NF4 or QuantType.FP4 => FourBitStorageBytes(n, blockSize, doubleQuant),
            _ => throw QuantTypes.Unknown(type),
        };
    }

    private static long FourBitStorageBytes(long n, int blockSize, bool doubleQuant)
    {
        BlockwiseKernels.CheckBlockSize(blockSize, nameof(blockSize));
        long blocks = (n + blockSize - 1) / blockSize;
        long absmaxBytes = doubleQuant ? blocks + (blocks + NestedBlockSize - 1) / NestedBlockSize * 4 + 4 : blocks * 4;
        return (n + 1) / 2 + absmaxBytes;
    }

    /// <summary>
    /// Quantizes <paramref name="weight"/> (float32, bfloat16 or float16, any shape, on any device) the way bnb's
    /// <c>quantize_4bit(blocksize, compress_statistics=doubleQuant, quant_type)</c> or <c>Int8Params</c> does.
    /// <paramref name="blockSize"/> applies to NF4/FP4 only (Int8 has one absmax per row). <paramref name="dtype"/> is what
    /// dequantization produces by default; it defaults to the weight's dtype. The weight is not modified or kept.
    /// </summary>
    public static QuantizedTensor Quantize(Tensor weight, QuantType type, int blockSize = DefaultBlockSize, bool doubleQuant = false, ScalarType? dtype = null)
    {
        ArgumentNullException.ThrowIfNull(weight);
        string what = $"the {weight.dtype} tensor of shape [{string.Join(", ", weight.shape)}]";
        CheckFloating(weight.dtype, nameof(weight), $"Cannot quantize {what}");
        if (weight.numel() == 0 || weight.dim() == 0)
        {
            throw new ArgumentException($"Cannot quantize {what}: it has no elements or is a scalar. Quantize a weight with at least one dimension.", nameof(weight));
        }
        var outputDType = dtype ?? weight.dtype;
        CheckFloating(outputDType, nameof(dtype), "Cannot dequantize into " + outputDType);
        return type switch
        {
            QuantType.NF4 or QuantType.FP4 => Quantize4bit(weight, type, blockSize, doubleQuant, outputDType, what),
            QuantType.Int8 when doubleQuant => throw new ArgumentException("Double quantization compresses the per-block absmax of NF4/FP4; Int8 has one absmax per row and no double quantization.", nameof(doubleQuant)),
            QuantType.Int8 => QuantizeInt8(weight, outputDType, what),
            _ => throw QuantTypes.Unknown(type),
        };
    }

    private static QuantizedTensor Quantize4bit(Tensor weight, QuantType type, int blockSize, bool doubleQuant, ScalarType dtype, string what)
    {
        BlockwiseKernels.CheckBlockSize(blockSize, nameof(blockSize));
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var flat = weight.detach().reshape(-1);
        long n = flat.shape[0];
        long blocks = (n + blockSize - 1) / blockSize;
        var device = weight.device;
        var packed = empty((n + 1) / 2, ScalarType.Byte, device);
        var absmax = empty(blocks, ScalarType.Float32, device);
        var search = NearestCode.For(type);
        byte padding = search.CodeOfZero();
        BlockwiseKernels.Quantize(flat, blockSize, search, absmax,
            (start, codes) => packed.narrow(0, start / 2, (codes.shape[0] + 1) / 2).copy_(BlockwiseKernels.PackNibbles(codes, padding)), what);

        NestedQuantState? nested = null;
        Tensor storedAbsmax = absmax;
        if (doubleQuant)
        {
            // bnb quantize_4bit(compress_statistics=True): offset = absmax.mean(); quantize_blockwise(absmax - offset, blocksize=256).
            var offset = absmax.mean();
            var centred = absmax - offset;
            var codes = empty(blocks, ScalarType.Byte, device);
            var nestedAbsmax = empty((blocks + NestedBlockSize - 1) / NestedBlockSize, ScalarType.Float32, device);
            BlockwiseKernels.Quantize(centred, NestedBlockSize, NearestCode.For("dynamic", Codebooks.DynamicSigned), nestedAbsmax,
                (start, c) => codes.narrow(0, start, c.shape[0]).copy_(c), $"the block absmax values of {what}");
            nested = new NestedQuantState(Codebooks.Detached(nestedAbsmax), Codebooks.Detached(CodeTensor(Codebooks.DynamicSigned, device)), NestedBlockSize, offset.item<float>());
            storedAbsmax = codes;
        }
        var state = new QuantState(type, blockSize, weight.shape, dtype, Codebooks.Detached(storedAbsmax), Codebooks.Detached(CodeTensor(Codebooks.For(type), device)), nested);
        return new QuantizedTensor(Codebooks.Detached(packed.view(-1, 1)), state);
    }

    private static QuantizedTensor QuantizeInt8(Tensor weight, ScalarType dtype, string what)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long columns = weight.shape[^1];
        long rows = weight.numel() / columns;
        var rowsView = weight.detach().reshape(rows, columns);
        var codes = empty(rows, columns, ScalarType.Int8, weight.device);
        var rowAbsmax = empty(rows, ScalarType.Float32, weight.device);
        RowwiseInt8.Quantize(rowsView, codes, rowAbsmax, what);
        var state = new QuantState(QuantType.Int8, checked((int)columns), weight.shape, dtype, Codebooks.Detached(rowAbsmax), null, null);
        return new QuantizedTensor(Codebooks.Detached(codes.view(weight.shape)), state);
    }

    /// <summary>A new tensor of <see cref="Shape"/> in <paramref name="dtype"/> (default <see cref="DType"/>) on <see cref="Device"/>.</summary>
    public Tensor Dequantize(ScalarType? dtype = null)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var outputDType = dtype ?? DType;
        CheckFloating(outputDType, nameof(dtype), "Cannot dequantize into " + outputDType);
        var output = empty(Shape.ToArray(), outputDType, Device);
        DequantizeInto(output);
        return output;
    }

    /// <summary>
    /// Dequantizes into <paramref name="output"/>, a contiguous float32, bfloat16 or float16 tensor of exactly
    /// <see cref="Shape"/> on <see cref="Device"/>; every element is overwritten. Values are formed in float32 and
    /// rounded once to the output dtype. Reuse one buffer (for example a view of a flat scratch tensor) across calls.
    /// </summary>
    public void DequantizeInto(Tensor output)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentNullException.ThrowIfNull(output);
        CheckFloating(output.dtype, nameof(output), "Cannot dequantize into a " + output.dtype + " tensor");
        if (!output.shape.SequenceEqual(Shape))
        {
            throw new ArgumentException($"The output buffer has shape [{string.Join(", ", output.shape)}] but the quantized tensor has shape [{string.Join(", ", Shape)}]. Pass a buffer (or a view of one) of the same shape.", nameof(output));
        }
        if (!output.is_contiguous())
        {
            throw new ArgumentException("The output buffer must be contiguous; pass a contiguous tensor or a view of one.", nameof(output));
        }
        if (output.device.ToString() != Device.ToString())
        {
            throw new ArgumentException($"The output buffer is on {output.device} but the quantized tensor is on {Device}. Allocate the buffer on the same device.", nameof(output));
        }
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var flatOutput = output.view(-1);
        if (QuantType == QuantType.Int8)
        {
            RowwiseInt8.Dequantize(Data.view(State.NumElements / BlockSize, BlockSize), State.Absmax, flatOutput.view(State.NumElements / BlockSize, BlockSize));
            return;
        }
        var absmax = IsDoubleQuantized ? State.DequantizeAbsmax() : State.Absmax;
        BlockwiseKernels.Dequantize4bit(Data.view(-1), absmax, BlockSize, QuantType.ToBitsAndBytesName(), Codebooks.For(QuantType), flatOutput);
    }

    /// <summary>
    /// The bitsandbytes state-dict entries for this weight under <paramref name="weightKey"/> (e.g.
    /// <c>model.layers.0.mlp.down_proj.weight</c>); see <see cref="BitsAndBytesStateDict"/>. The returned tensors share
    /// storage with this object (no copies) and are the caller's to dispose.
    /// </summary>
    public Dictionary<string, Tensor> ToStateDict(string weightKey) => BitsAndBytesStateDict.Write(this, weightKey);

    /// <summary>
    /// Rebuilds a quantized weight from bitsandbytes state-dict entries (as <c>Linear4bit</c>/<c>Linear8bitLt</c> save them).
    /// The result shares storage with the given tensors; the caller may dispose its own tensors afterwards.
    /// </summary>
    public static QuantizedTensor FromStateDict(IReadOnlyDictionary<string, Tensor> tensors, string weightKey) => BitsAndBytesStateDict.Read(tensors, weightKey, "the state dict");

    /// <summary>Reads the quantized weight <paramref name="weightKey"/> and its bitsandbytes entries from a safetensors file.</summary>
    public static QuantizedTensor Read(SafetensorsFile file, string weightKey) => BitsAndBytesStateDict.Read(file, weightKey);

    public void Dispose()
    {
        if (disposed)
        {
            return;
        }
        disposed = true;
        Data.Dispose();
        State.Dispose();
    }

    internal static Tensor CodeTensor(IReadOnlyList<float> table, Device device) => tensor(table.ToArray(), ScalarType.Float32, device);

    internal static void CheckFloating(ScalarType dtype, string parameterName, string context)
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
        {
            throw new ArgumentException($"{context}: only float32, bfloat16 and float16 are supported, as in bitsandbytes.", parameterName);
        }
    }
}
