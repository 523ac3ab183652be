using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Models;

/// <summary>
/// Rotary position embedding in Hugging Face's half-split ("rotate_half") layout, with optional linear or Llama-3
/// frequency scaling. Not a module: <c>inv_freq</c> is derived from the config, never stored in checkpoints.
/// </summary>
/// <remarks>
/// HF Llama weights were permuted at conversion time for this layout; Meta's interleaved-pair RoPE
/// (rotating (x₀,x₁), (x₂,x₃), …) gives wrong outputs with them. Frequencies and angles are computed in fp32 and only
/// cos/sin are cast to the activation dtype, as transformers does.
/// </remarks>
internal sealed class RotaryEmbedding
{
    private readonly float[] _invFreq;

    public RotaryEmbedding(int headDim, double theta, RopeScaling? scaling)
    {
        if (headDim % 2 != 0) throw new ArgumentException($"RoPE needs an even head_dim, got {headDim}.", nameof(headDim));
        HeadDim = headDim;
        using var scope = NewDisposeScope();
        var exponent = torch.arange(0, headDim, 2, dtype: ScalarType.Int64).to(ScalarType.Float32) / headDim;
        // 1 / θ^(2j/d), written as reciprocal like Python's `1.0 / tensor` so the fp32 bits match transformers.
        var invFreq = torch.full(Array.Empty<long>(), theta, dtype: ScalarType.Float32).pow(exponent).reciprocal();
        invFreq = scaling?.Type switch {
            null => invFreq,
            "linear" => invFreq / scaling.Factor,
            "llama3" => Llama3(invFreq, scaling),
            _ => throw new NotSupportedException($"RoPE scaling '{scaling.Type}' is not supported yet (supported: linear, llama3)."),
        };
        _invFreq = invFreq.data<float>().ToArray();
    }

    public int HeadDim { get; }

    /// <summary>The inverse frequencies (length head_dim/2), for tests and diagnostics.</summary>
    public IReadOnlyList<float> InverseFrequencies => _invFreq;

    /// <summary>
    /// Llama-3.1 scaling: long wavelengths (low frequencies) are slowed by <c>factor</c>, short ones kept, and the
    /// band in between interpolated smoothly (transformers' <c>_compute_llama3_parameters</c>).
    /// </summary>
    private static Tensor Llama3(Tensor invFreq, RopeScaling s)
    {
        double oldContext = s.OriginalMaxPositionEmbeddings;
        var lowFreqWavelen = oldContext / s.LowFreqFactor;
        var highFreqWavelen = oldContext / s.HighFreqFactor;
        var wavelen = invFreq.reciprocal() * (2 * Math.PI);
        var scaled = torch.where(wavelen > lowFreqWavelen, invFreq / s.Factor, invFreq);
        var smooth = (wavelen.reciprocal() * oldContext - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
        var smoothed = (1 - smooth) * scaled / s.Factor + smooth * scaled;
        var isMedium = (wavelen >= highFreqWavelen).logical_and(wavelen <= lowFreqWavelen);
        return torch.where(isMedium, smoothed, scaled);
    }

    /// <summary>cos and sin of the rotation angles for absolute <paramref name="positionIds"/> [B, T] (int64), as
    /// [B, T, head_dim] tensors in <paramref name="dtype"/>.</summary>
    public (Tensor Cos, Tensor Sin) CosSin(Tensor positionIds, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var invFreq = torch.tensor(_invFreq, device: positionIds.device);
        var freqs = positionIds.to(ScalarType.Float32).unsqueeze(-1) * invFreq;   // [B, T, d/2]
        var angles = torch.cat(new[] { freqs, freqs }, -1);                         // [B, T, d]
        return (angles.cos().to(dtype).MoveToOuterDisposeScope(), angles.sin().to(dtype).MoveToOuterDisposeScope());
    }

    /// <summary>Rotates <paramref name="x"/> [B, H, T, d] by the angles (cos/sin [B, T, d]).</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        var c = cos.unsqueeze(1);
        var s = sin.unsqueeze(1);
        return (x * c + RotateHalf(x) * s).MoveToOuterDisposeScope();
    }

    /// <summary><c>[x₁, x₂] → [−x₂, x₁]</c> over the two halves of the last dimension.</summary>
    private static Tensor RotateHalf(Tensor x)
    {
        var half = x.shape[^1] / 2;
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        return torch.cat(new[] { -x2, x1 }, -1);
    }
}
