using LoraPS.Adapters;
using LoraPS.Data;
using LoraPS.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraPS.Benchmarks.Benchmarks;

/// <summary>
/// The baseline for "faster than a PyTorch eager training step": a LoRA training step written the way a plain
/// PyTorch script with transformers' eager Llama and PEFT's <c>lora.Linear</c> runs it, op for op, over the same
/// libtorch kernels (TorchSharp calls the libtorch that PyTorch eager would). Real PyTorch is not installed on the
/// benchmark machine, so this is the closest comparison that can be measured there.
/// </summary>
/// <remarks>
/// What it does, as such a script would: the causal mask materialised as a [B, 1, T, T] additive float tensor
/// (transformers' eager attention), softmax in fp32, rotary cos/sin recomputed every forward, LoRA as
/// <c>base(x) + lora_B(lora_A(dropout(x))) · scaling</c> (PEFT scales the full-width output), logits upcast to fp32
/// before the loss, and <c>torch.optim.AdamW</c> (per-parameter, TorchSharp's port of torch's single-tensor AdamW,
/// which is what torch uses for CPU tensors) with <c>zero_grad()</c> after the step. It logs the loss (<c>.item()</c>)
/// but does not compute a gradient norm, which LoraPS does every step for its metrics. Weights and adapter initial
/// values are the LoraPS model's, so both compute the same function.
/// </remarks>
internal sealed class EagerLoraLlama : IDisposable
{
    readonly ModelConfig _c;
    readonly Dictionary<string, Tensor> _base = new(StringComparer.Ordinal);
    readonly Dictionary<string, (Parameter A, Parameter B)> _lora = new(StringComparer.Ordinal);
    readonly double _scaling, _dropout;
    readonly Tensor _invFreq;
    readonly torch.optim.Optimizer _optimizer;

    public EagerLoraLlama(LoraModel model, LoraConfig adapter)
    {
        _c = model.Config;
        _scaling = (double)adapter.Alpha / adapter.Rank;
        _dropout = adapter.Dropout;
        var state = model.Network.state_dict();
        foreach (var (key, value) in state)
        {
            if (key.Contains(".lora_")) continue;
            _base[key.Replace(".base_layer.", ".")] = value;
        }
        if (!_base.ContainsKey("lm_head.weight")) _base["lm_head.weight"] = _base["model.embed_tokens.weight"];
        foreach (var info in model.Adapters.Get("default").Targets)
        {
            var layer = (LoraLinear)model.Network.GetModule(info.Path);
            _lora[info.Path] = (new Parameter(layer.LoraA("default").detach().clone()), new Parameter(layer.LoraB("default").detach().clone()));
        }
        _invFreq = (1.0 / pow(_c.RopeTheta, arange(0, _c.HeadDim, 2, dtype: ScalarType.Int64).to(ScalarType.Float32) / _c.HeadDim)).DetachFromDisposeScope();
        _optimizer = torch.optim.AdamW(_lora.Values.SelectMany(p => new[] { p.A, p.B }), lr: 1e-3, weight_decay: 0.01);
    }

    /// <summary>One training step on micro-batch <paramref name="index"/> (wrapping around the data).</summary>
    public double Step(PreparedData data, int microBatch, int index)
    {
        using var scope = NewDisposeScope();
        using var batch = Batch(data, microBatch, index);
        var loss = Loss(batch, training: true);
        loss.backward();
        _optimizer.step();
        _optimizer.zero_grad();
        return loss.item<float>();
    }

    /// <summary>The loss of the first micro-batch here and through LoraPS's model (same weights, B = 0 so dropout is moot).</summary>
    public (double Loss, double Difference) CheckAgainst(LoraModel model, PreparedData data, int microBatch)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var batch = Batch(data, microBatch, 0);
        double eager = Loss(batch, training: false).item<float>();
        var network = model.Network;
        network.eval();
        double reference = network.ComputeLoss(network.Forward(batch.InputIds, batch.AttentionMask), batch.Labels).item<float>();
        return (eager, Math.Abs(eager - reference));
    }

    static TrainingBatch Batch(PreparedData data, int microBatch, int index)
    {
        int count = data.Train.Count;
        var examples = Enumerable.Range(0, microBatch).Select(i => data.Train[(index * microBatch + i) % count]).ToList();
        return BatchCollator.Collate(examples);
    }

    Tensor Loss(TrainingBatch batch, bool training)
    {
        var (b, t) = (batch.InputIds.shape[0], batch.InputIds.shape[1]);
        var dtype = _base["model.embed_tokens.weight"].dtype;
        var table = _base["model.embed_tokens.weight"];
        var h = table.index_select(0, batch.InputIds.reshape(-1)).view(b, t, -1);   // F.embedding

        // transformers' eager path: a materialised [B, 1, T, T] mask, causal and padding, finfo.min where masked.
        var min = torch.finfo(dtype).min;
        var causal = full([t, t], min, dtype: dtype).triu(1);
        var mask = causal.unsqueeze(0).unsqueeze(0).expand(b, 1, t, t).clone();
        var padding = batch.AttentionMask.eq(0).unsqueeze(1).unsqueeze(1).expand(b, 1, t, t);
        mask = mask.masked_fill(padding, min);

        var positions = arange(t, dtype: ScalarType.Int64).unsqueeze(0).expand(b, t);
        var freqs = positions.to(ScalarType.Float32).unsqueeze(-1) * _invFreq;
        var emb = cat([freqs, freqs], -1);
        var (cos, sin) = (emb.cos().to(dtype).unsqueeze(1), emb.sin().to(dtype).unsqueeze(1));

        for (int i = 0; i < _c.NumHiddenLayers; i++)
        {
            var p = $"model.layers.{i}.";
            var x = RmsNorm(h, p + "input_layernorm.weight");
            var q = Linear(x, p + "self_attn.q_proj", training).view(b, t, _c.NumAttentionHeads, _c.HeadDim).transpose(1, 2);
            var k = Linear(x, p + "self_attn.k_proj", training).view(b, t, _c.NumKeyValueHeads, _c.HeadDim).transpose(1, 2);
            var v = Linear(x, p + "self_attn.v_proj", training).view(b, t, _c.NumKeyValueHeads, _c.HeadDim).transpose(1, 2);
            q = q * cos + RotateHalf(q) * sin;
            k = k * cos + RotateHalf(k) * sin;
            k = RepeatKv(k);
            v = RepeatKv(v);
            var scores = q.matmul(k.transpose(2, 3)) * (1.0 / Math.Sqrt(_c.HeadDim)) + mask;
            var probs = F.softmax(scores, -1, ScalarType.Float32).to(dtype);
            var o = probs.matmul(v).transpose(1, 2).contiguous().reshape(b, t, -1);
            h = h + Linear(o, p + "self_attn.o_proj", training);
            x = RmsNorm(h, p + "post_attention_layernorm.weight");
            h = h + Linear(F.silu(Linear(x, p + "mlp.gate_proj", training)) * Linear(x, p + "mlp.up_proj", training), p + "mlp.down_proj", training);
        }
        h = RmsNorm(h, "model.norm.weight");
        var logits = F.linear(h, _base["lm_head.weight"]).to(ScalarType.Float32);
        var shifted = logits.narrow(1, 0, t - 1).contiguous().view(-1, logits.shape[2]);
        var labels = batch.Labels.narrow(1, 1, t - 1).contiguous().view(-1);
        return F.cross_entropy(shifted, labels, ignore_index: -100);
    }

    /// <summary>PEFT lora.Linear: result = base(x); result = result + lora_B(lora_A(dropout(x))) * scaling.</summary>
    Tensor Linear(Tensor x, string path, bool training)
    {
        var result = F.linear(x, _base[path + ".weight"]);
        if (!_lora.TryGetValue(path, out var lora)) return result;
        var input = x.to(lora.A.dtype);
        var dropped = _dropout > 0 ? F.dropout(input, _dropout, training) : input;
        return (result + F.linear(F.linear(dropped, lora.A), lora.B) * _scaling).to(result.dtype);
    }

    Tensor RmsNorm(Tensor x, string weight)
    {
        var h = x.to(ScalarType.Float32);
        h = h * rsqrt(h.pow(2).mean([-1], keepdim: true) + _c.NormEpsilon);
        return _base[weight] * h.to(x.dtype);
    }

    static Tensor RotateHalf(Tensor x)
    {
        var half = x.shape[^1] / 2;
        return cat([-x.narrow(-1, half, half), x.narrow(-1, 0, half)], -1);
    }

    Tensor RepeatKv(Tensor x)
    {
        long groups = _c.NumAttentionHeads / _c.NumKeyValueHeads;
        if (groups == 1) return x;
        var (b, h, s, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        return x.unsqueeze(2).expand(b, h, groups, s, d).reshape(b, h * groups, s, d);
    }

    public void Dispose()
    {
        _optimizer.Dispose();
        foreach (var (a, b) in _lora.Values) { a.Dispose(); b.Dispose(); }
        _invFreq.Dispose();
    }
}
