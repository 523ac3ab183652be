using TorchSharp;
using TorchSharp.Utils;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LoraPS.Models;

// Llama, Mistral and Qwen2 share one class tree; they differ only in config flags (Qwen2's q/k/v bias, Mistral's
// sliding window). Module names follow transformers' LlamaForCausalLM → model → layers.N → self_attn / mlp.

/// <summary>Grouped-query self-attention with rotary positions (HF <c>LlamaAttention</c>).</summary>
public sealed class LlamaAttention : nn.Module
{
    [ComponentName(Name = "q_proj")] private nn.Module<Tensor, Tensor> _qProj;
    [ComponentName(Name = "k_proj")] private nn.Module<Tensor, Tensor> _kProj;
    [ComponentName(Name = "v_proj")] private nn.Module<Tensor, Tensor> _vProj;
    [ComponentName(Name = "o_proj")] private nn.Module<Tensor, Tensor> _oProj;
    private readonly int _layerIndex;
    private readonly int _heads, _kvHeads, _headDim;
    private readonly double _dropout;
    private readonly AttentionSettings _settings;

    internal LlamaAttention(ModelBuild build, int layerIndex) : base(nameof(LlamaAttention))
    {
        var c = build.Config;
        (_layerIndex, _heads, _kvHeads, _headDim, _dropout, _settings) =
            (layerIndex, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.AttentionDropout, build.Attention);
        var qkvBias = c.AttentionBias || c.QkvBias;
        _qProj = build.Linear(c.HiddenSize, _heads * _headDim, qkvBias);
        _kProj = build.Linear(c.HiddenSize, _kvHeads * _headDim, qkvBias);
        _vProj = build.Linear(c.HiddenSize, _kvHeads * _headDim, qkvBias);
        _oProj = build.Linear(_heads * _headDim, c.HiddenSize, c.AttentionBias);
        RegisterComponents();
    }

    internal Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, bool isCausal, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        var (b, t) = (x.shape[0], x.shape[1]);
        var q = _qProj.call(x).view(b, t, _heads, _headDim).transpose(1, 2);
        var k = _kProj.call(x).view(b, t, _kvHeads, _headDim).transpose(1, 2);
        var v = _vProj.call(x).view(b, t, _kvHeads, _headDim).transpose(1, 2);
        q = RotaryEmbedding.Apply(q, cos, sin);
        k = RotaryEmbedding.Apply(k, cos, sin);
        if (cache is not null) (k, v) = cache.Append(_layerIndex, k, v);
        var o = AttentionMath.Attend(q, k, v, mask, isCausal, 1.0 / Math.Sqrt(_headDim),
            training ? _dropout : 0.0, _settings.Implementation);
        o = o.transpose(1, 2).reshape(b, t, _heads * _headDim);
        return _oProj.call(o).MoveToOuterDisposeScope();
    }
}

/// <summary>SwiGLU feed-forward: <c>down(act(gate(x)) · up(x))</c> (HF <c>LlamaMLP</c>).</summary>
public sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "gate_proj")] private nn.Module<Tensor, Tensor> _gateProj;
    [ComponentName(Name = "up_proj")] private nn.Module<Tensor, Tensor> _upProj;
    [ComponentName(Name = "down_proj")] private nn.Module<Tensor, Tensor> _downProj;
    private readonly Func<Tensor, Tensor> _act;

    internal LlamaMlp(ModelBuild build) : base(nameof(LlamaMlp))
    {
        var c = build.Config;
        _gateProj = build.Linear(c.HiddenSize, c.IntermediateSize, c.MlpBias);
        _upProj = build.Linear(c.HiddenSize, c.IntermediateSize, c.MlpBias);
        _downProj = build.Linear(c.IntermediateSize, c.HiddenSize, c.MlpBias);
        _act = Activations.Get(c.HiddenAct, c.SourcePath);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return _downProj.call(_act(_gateProj.call(x)) * _upProj.call(x)).MoveToOuterDisposeScope();
    }
}

/// <summary>Pre-norm block: <c>h = x + attn(norm(x))</c>, <c>out = h + mlp(norm(h))</c>.</summary>
public sealed class LlamaDecoderLayer : nn.Module
{
    [ComponentName(Name = "self_attn")] private LlamaAttention _selfAttn;
    [ComponentName(Name = "mlp")] private nn.Module<Tensor, Tensor> _mlp;
    [ComponentName(Name = "input_layernorm")] private nn.Module<Tensor, Tensor> _inputLayernorm;
    [ComponentName(Name = "post_attention_layernorm")] private nn.Module<Tensor, Tensor> _postAttentionLayernorm;

    internal LlamaDecoderLayer(ModelBuild build, int layerIndex) : base(nameof(LlamaDecoderLayer))
    {
        _selfAttn = new LlamaAttention(build, layerIndex);
        _mlp = new LlamaMlp(build);
        _inputLayernorm = build.RmsNorm(build.Config.HiddenSize);
        _postAttentionLayernorm = build.RmsNorm(build.Config.HiddenSize);
        RegisterComponents();
    }

    internal Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, bool isCausal, KvCache? cache)
    {
        // One scope per layer frees the layer's temporaries before the next layer runs.
        using var scope = NewDisposeScope();
        var h = x + _selfAttn.Forward(_inputLayernorm.call(x), cos, sin, mask, isCausal, cache);
        return (h + _mlp.call(_postAttentionLayernorm.call(h))).MoveToOuterDisposeScope();
    }
}

/// <summary>The decoder body (HF <c>LlamaModel</c> / <c>MistralModel</c> / <c>Qwen2Model</c>): embed, N blocks, final RMSNorm.</summary>
public sealed class LlamaModel : TransformerModel
{
    [ComponentName(Name = "embed_tokens")] private EmbeddingTable _embedTokens;
    [ComponentName(Name = "layers")] private ModuleList<LlamaDecoderLayer> _layers;
    [ComponentName(Name = "norm")] private nn.Module<Tensor, Tensor> _norm;
    private readonly RotaryEmbedding _rotary;

    internal LlamaModel(ModelBuild build) : base(nameof(LlamaModel), build)
    {
        var c = build.Config;
        _embedTokens = build.Embedding(c.VocabSize, c.HiddenSize);
        _layers = new ModuleList<LlamaDecoderLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(i => new LlamaDecoderLayer(build, i)).ToArray());
        _norm = build.RmsNorm(c.HiddenSize);
        _rotary = new RotaryEmbedding(c.HeadDim, c.RopeTheta, c.RopeScaling);
        RegisterComponents();
        build.Checkpointing.Supported = true;
    }

    public override ModelHeadKind HeadKind => ModelHeadKind.Base;

    /// <summary>The token embedding, for weight tying.</summary>
    public EmbeddingTable EmbedTokens => _embedTokens;

    private protected override ModelOutput ForwardCore(ForwardArgs a)
    {
        var (b, t) = (a.InputIds.shape[0], a.InputIds.shape[1]);
        var past = a.Cache?.Length ?? 0;
        var positions = a.PositionIds ?? torch.arange(past, past + t, dtype: ScalarType.Int64, device: Device).unsqueeze(0).expand(b, t);
        var h = _embedTokens.call(a.InputIds);
        var (cos, sin) = _rotary.CosSin(positions, h.dtype);
        var (mask, isCausal) = DecoderMasks.For(a.AttentionMask, t, past, Config.SlidingWindow, h.dtype, Device);

        var hidden = new List<Tensor>();
        var cache = a.Cache;
        foreach (var layer in _layers) {
            if (a.OutputHiddenStates) hidden.Add(h);
            h = RunLayer((x, c) => layer.Forward(x, c[0]!, c[1]!, c[2], isCausal, cache), h, cache, cos, sin, mask);
        }
        h = _norm.call(h);
        // transformers records the final-norm output as the last hidden state, not the raw last layer output.
        if (a.OutputHiddenStates) hidden.Add(h);
        return new ModelOutput(h, hidden);
    }
}

/// <summary>Decoder body + vocabulary projection (HF <c>LlamaForCausalLM</c> and the Mistral/Qwen2 equivalents).</summary>
public sealed class LlamaForCausalLM : TransformerModel
{
    [ComponentName(Name = "model")] private LlamaModel _model;
    [ComponentName(Name = "lm_head")] private nn.Module<Tensor, Tensor> _lmHead;

    internal LlamaForCausalLM(ModelBuild build) : base(nameof(LlamaForCausalLM), build)
    {
        _model = new LlamaModel(build);
        _lmHead = build.Linear(Config.HiddenSize, Config.VocabSize, bias: false);
        RegisterComponents();
        if (Config.TieWordEmbeddings && _lmHead is Linear head) WeightTying.Tie(head, _model.EmbedTokens)?.Dispose();
    }

    public override ModelHeadKind HeadKind => ModelHeadKind.CausalLM;

    public LlamaModel Model => _model;

    public override void TieWeights()
    {
        if (Config.TieWordEmbeddings && _lmHead is Linear head) WeightTying.Tie(head, _model.EmbedTokens);
    }

    public override IReadOnlyList<(string Tied, string Source)> TiedParameters =>
        Config.TieWordEmbeddings ? new[] { ("lm_head.weight", "model.embed_tokens.weight") } : Array.Empty<(string, string)>();

    private protected override ModelOutput ForwardCore(ForwardArgs a)
    {
        var body = _model.ForwardBody(a);
        return body.WithHead(_lmHead.call(body.LastHiddenState));
    }
}

/// <summary>Decoder body + a bias-free <c>score</c> layer read at each sequence's last real token (HF <c>LlamaForSequenceClassification</c>).</summary>
public sealed class LlamaForSequenceClassification : TransformerModel
{
    [ComponentName(Name = "model")] private LlamaModel _model;
    [ComponentName(Name = "score")] private nn.Module<Tensor, Tensor> _score;

    internal LlamaForSequenceClassification(ModelBuild build) : base(nameof(LlamaForSequenceClassification), build)
    {
        _model = new LlamaModel(build);
        _score = build.Linear(Config.HiddenSize, Config.NumLabels, bias: false);
        RegisterComponents();
    }

    public override ModelHeadKind HeadKind => ModelHeadKind.SequenceClassification;

    public LlamaModel Model => _model;

    private protected override ModelOutput ForwardCore(ForwardArgs a)
    {
        var body = _model.ForwardBody(a);
        var logits = _score.call(body.LastHiddenState);
        return body.WithHead(SequencePooling.LastToken(logits, a.InputIds, a.AttentionMask, Config.PadTokenId));
    }
}

/// <summary>Causal masks for decoders, choosing the cheapest correct form.</summary>
internal static class DecoderMasks
{
    /// <summary>
    /// (mask, isCausal): no mask at all for a single decode step without padding; the kernel's built-in causal mask for
    /// a fresh unpadded sequence (lets SDPA use flash attention); an explicit additive mask otherwise.
    /// </summary>
    public static (Tensor? Mask, bool IsCausal) For(Tensor? attentionMask, long t, long past, int? window, ScalarType dtype, Device device)
    {
        var windowBites = window is { } w && past + t > w;
        if (attentionMask is null && !windowBites) {
            if (past == 0) return (null, true);
            if (t == 1) return (null, false);
        }
        return (AttentionMath.CausalMask(attentionMask, t, past, window, dtype, device), false);
    }
}

/// <summary>Picks the classification logits of each sequence's last real token.</summary>
internal static class SequencePooling
{
    /// <summary>
    /// logits [B, T, L] → [B, L] at the last token whose id is not the pad id (transformers ≥ 4.46; this also handles
    /// left padding). Without a pad id: the last position the attention mask marks, or the last position.
    /// </summary>
    public static Tensor LastToken(Tensor logits, Tensor inputIds, Tensor? attentionMask, int? padTokenId)
    {
        var (b, t, l) = (logits.shape[0], logits.shape[1], logits.shape[2]);
        var positions = torch.arange(t, dtype: ScalarType.Int64, device: logits.device);
        Tensor last;
        if (padTokenId is { } pad)
            last = (positions * inputIds.ne(pad).to(ScalarType.Int64)).argmax(-1);
        else if (attentionMask is not null)
            last = (positions * attentionMask.narrow(1, attentionMask.shape[1] - t, t).ne(0).to(ScalarType.Int64)).argmax(-1);
        else
            last = torch.full(new[] { b }, t - 1, dtype: ScalarType.Int64, device: logits.device);
        return logits.gather(1, last.view(b, 1, 1).expand(b, 1, l)).squeeze(1);
    }
}
