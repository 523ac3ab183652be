using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Quantization;

/// <summary>
/// LLM.int8() weight storage, as bitsandbytes' <c>Int8Params</c> makes it with <c>int8_vectorwise_quant(w)</c>
/// (threshold 0, so no outlier columns: LLM.int8's outlier decomposition applies to activations at matmul time) and
/// reverses it with <c>int8_vectorwise_dequant</c>:
/// <code>
///   s = max|w| per row (SCB, float32)     q = round(w · (127 / s))  (int8, CB)     w ≈ q · s · (1/127)
/// </code>
/// </summary>
internal static class RowwiseInt8
{
    // bnb dequantizes with the float32 reciprocal of 127 written as this literal: A * stats * 7.874015718698502e-3.
    private const double InverseOf127 = 7.874015718698502e-3;

    /// <summary>Quantizes [rows, columns] <paramref name="rows"/> into <paramref name="codes"/> (int8) and <paramref name="rowAbsmax"/> (float32).</summary>
    internal static void Quantize(Tensor rows, Tensor codes, Tensor rowAbsmax, string what)
    {
        long count = rows.shape[0];
        long step = Math.Max(1, BlockwiseKernels.ChunkElements / rows.shape[1]);
        for (long start = 0; start < count; start += step)
        {
            using var scope = NewDisposeScope();
            long length = Math.Min(step, count - start);
            var x = rows.narrow(0, start, length).to_type(ScalarType.Float32);
            var absmax = x.abs().amax([1]);
            if (!absmax.isfinite().all().item<bool>())
            {
                long bad = start + absmax.isfinite().logical_not().nonzero()[0, 0].item<long>();
                throw new ArgumentException($"Cannot quantize {what}: row {bad} contains NaN or infinite values. Quantization needs finite weights; check the checkpoint or the training run that produced them.");
            }
            // bnb writes 127.0 / row_stats, which torch evaluates as row_stats.reciprocal() * 127.
            var scale = absmax.reciprocal().mul_(127);
            // An all-zero row would give 0 · inf = NaN, whose int8 cast is undefined in bnb; store zeros.
            scale.masked_fill_(absmax.eq(0), 0);
            codes.narrow(0, start, length).copy_((x * scale.unsqueeze(1)).round_().to_type(ScalarType.Int8));
            rowAbsmax.narrow(0, start, length).copy_(absmax);
        }
    }

    /// <summary>Writes <c>(q · s) · (1/127)</c>, formed in float32, into the [rows, columns] <paramref name="output"/>.</summary>
    internal static void Dequantize(Tensor codes, Tensor rowAbsmax, Tensor output)
    {
        long count = codes.shape[0];
        long step = Math.Max(1, BlockwiseKernels.ChunkElements / codes.shape[1]);
        for (long start = 0; start < count; start += step)
        {
            using var scope = NewDisposeScope();
            long length = Math.Min(step, count - start);
            var values = codes.narrow(0, start, length).to_type(ScalarType.Float32)
                .mul_(rowAbsmax.narrow(0, start, length).unsqueeze(1))
                .mul_(InverseOf127);
            output.narrow(0, start, length).copy_(values);
        }
    }
}
