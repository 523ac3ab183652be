using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Models;

/// <summary>How attention scores are computed. Both give the same results to float rounding.</summary>
public enum AttentionImplementation
{
    /// <summary><c>scaled_dot_product_attention</c>: fused kernels (flash / memory-efficient) where libtorch has them.</summary>
    Sdpa,
    /// <summary>transformers' "eager" path spelled out: <c>softmax(QKᵀ·scale + mask)</c> with the softmax in fp32.</summary>
    Eager,
}

/// <summary>Attention math shared by every architecture: masks, grouped-query expansion, and the kernel call.</summary>
internal static class AttentionMath
{
    /// <summary>
    /// <c>softmax(q·kᵀ·scale + mask)·v</c> for q [B, H, T, d] and k, v [B, H_kv, S, d]; returns [B, H, T, d].
    /// <paramref name="mask"/> is additive, broadcastable to [B, 1, T, S] (0 = attend, dtype minimum = masked), or null;
    /// <paramref name="isCausal"/> applies the plain causal mask when there is no mask (query t sees keys ≤ t; T == S).
    /// <paramref name="dropout"/> is the attention-probability dropout (pass 0 outside training).
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask, bool isCausal, double scale,
        double dropout, AttentionImplementation implementation)
    {
        using var scope = NewDisposeScope();
        var groups = q.shape[1] / k.shape[1];
        k = RepeatKv(k, groups);
        v = RepeatKv(v, groups);
        Tensor output;
        if (implementation == AttentionImplementation.Sdpa) {
            // TorchSharp's SDPA has no scale argument; it uses 1/√d, so fold any other scale into q.
            var defaultScale = 1.0 / Math.Sqrt(q.shape[^1]);
            if (Math.Abs(scale - defaultScale) > 1e-12 * defaultScale) q = q * (scale / defaultScale);
            var m = mask?.to(q.dtype);
            output = nn.functional.scaled_dot_product_attention(q, k, v, m, dropout, isCausal && m is null);
        } else {
            var scores = q.matmul(k.transpose(-2, -1)) * scale;
            if (mask is not null) scores = scores + mask.to(scores.dtype);
            else if (isCausal) scores = scores + CausalMask(null, q.shape[2], 0, null, scores.dtype, q.device)!;
            // transformers upcasts the softmax to fp32 and casts back before multiplying by V.
            var probs = nn.functional.softmax(scores, -1, ScalarType.Float32).to(v.dtype);
            if (dropout > 0) probs = nn.functional.dropout(probs, dropout, training: true);
            output = probs.matmul(v);
        }
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Grouped-query attention: each of the H_kv heads serves <paramref name="groups"/> consecutive query heads
    /// (query head h uses kv head h / groups), so repeat each kv head in place, like transformers' repeat_kv.
    /// </summary>
    public static Tensor RepeatKv(Tensor x, long groups)
    {
        if (groups == 1) return x.alias();
        var (b, h, s, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        return x.unsqueeze(2).expand(b, h, groups, s, d).reshape(b, h * groups, s, d);
    }

    /// <summary>
    /// Additive causal mask [B or 1, 1, T, S] for T new queries after <paramref name="pastLength"/> cached positions
    /// (S = past + T): query t (absolute position past+t) sees key j when j ≤ past+t, the key is not padding, and —
    /// with a sliding window w — past+t − j &lt; w.
    /// </summary>
    /// <remarks><paramref name="attentionMask"/> is [B, S] with 1 for real tokens and 0 for padding, or null. Masked
    /// entries hold the dtype's finite minimum, not −∞, so a fully padded row stays finite as in transformers.</remarks>
    public static Tensor? CausalMask(Tensor? attentionMask, long queryLength, long pastLength, int? slidingWindow,
        ScalarType dtype, Device device)
    {
        var keyLength = pastLength + queryLength;
        if (attentionMask is not null && attentionMask.shape[^1] != keyLength)
            throw new ArgumentException(
                $"attention_mask covers {attentionMask.shape[^1]} positions, but the cache holds {pastLength} and the input adds {queryLength}; " +
                "pass a mask over past and new tokens together.", nameof(attentionMask));
        using var scope = NewDisposeScope();
        var queryPositions = torch.arange(pastLength, keyLength, dtype: ScalarType.Int64, device: device).unsqueeze(1);
        var keyPositions = torch.arange(0, keyLength, dtype: ScalarType.Int64, device: device).unsqueeze(0);
        var allowed = keyPositions <= queryPositions;                                    // [T, S]
        if (slidingWindow is { } w) allowed = allowed.logical_and(queryPositions - keyPositions < w);
        allowed = allowed.unsqueeze(0).unsqueeze(0);                                     // [1, 1, T, S]
        if (attentionMask is not null)
            allowed = allowed.logical_and(attentionMask.to(device).ne(0).unsqueeze(1).unsqueeze(1));
        return Additive(allowed, dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Encoder padding mask [B, 1, 1, S] from a [B, S] attention mask; null when there is none.</summary>
    public static Tensor? PaddingMask(Tensor? attentionMask, ScalarType dtype, Device device)
    {
        if (attentionMask is null) return null;
        using var scope = NewDisposeScope();
        var allowed = attentionMask.to(device).ne(0).unsqueeze(1).unsqueeze(1);
        return Additive(allowed, dtype).MoveToOuterDisposeScope();
    }

    private static Tensor Additive(Tensor allowed, ScalarType dtype) =>
        torch.zeros(allowed.shape, dtype: dtype, device: allowed.device).masked_fill(allowed.logical_not(), torch.finfo(dtype).min);
}
