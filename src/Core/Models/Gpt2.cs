using TorchSharp;
using TorchSharp.Utils;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LoraPS.Models;

// GPT-2 (HF GPT2LMHeadModel → transformer → h.N → attn / mlp). Its c_attn, c_proj and c_fc are Conv1D in
// transformers, storing W as (in, out) and computing x·W + b. Here they are ordinary Linear layers holding Wᵀ; the
// loader transposes them (see ArchitectureMapping.Gpt2) and FanInFanOutModules lists them for writers.

/// <summary>Multi-head causal self-attention with a fused q|k|v projection (HF <c>GPT2Attention</c>).</summary>
public sealed class Gpt2Attention : nn.Module
{
    [ComponentName(Name = "c_attn")] private nn.Module<Tensor, Tensor> _cAttn;
    [ComponentName(Name = "c_proj")] private nn.Module<Tensor, Tensor> _cProj;
    private readonly int _layerIndex, _heads, _headDim;
    private readonly double _scale, _attentionDropout, _residualDropout;
    private readonly AttentionSettings _settings;

    internal Gpt2Attention(ModelBuild build, int layerIndex) : base(nameof(Gpt2Attention))
    {
        var c = build.Config;
        (_layerIndex, _heads, _headDim, _settings) = (layerIndex, c.NumAttentionHeads, c.HeadDim, build.Attention);
        (_attentionDropout, _residualDropout) = (c.AttentionDropout, c.HiddenDropout);
        _scale = (c.ScaleAttentionWeights ? 1.0 / Math.Sqrt(_headDim) : 1.0)
                 / (c.ScaleAttentionByInverseLayerIndex ? layerIndex + 1 : 1);
        _cAttn = build.Linear(c.HiddenSize, 3L * c.HiddenSize, bias: true);
        _cProj = build.Linear(c.HiddenSize, c.HiddenSize, bias: true);
        RegisterComponents();
    }

    internal Tensor Forward(Tensor x, Tensor? mask, bool isCausal, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        var (b, t, hidden) = (x.shape[0], x.shape[1], x.shape[2]);
        // c_attn's output is [q | k | v] along the features, each then split into heads.
        var qkv = _cAttn.call(x).split(hidden, 2);
        Tensor Heads(Tensor z) => z.view(b, t, _heads, _headDim).transpose(1, 2);
        var (q, k, v) = (Heads(qkv[0]), Heads(qkv[1]), Heads(qkv[2]));
        if (cache is not null) (k, v) = cache.Append(_layerIndex, k, v);
        var o = AttentionMath.Attend(q, k, v, mask, isCausal, _scale, training ? _attentionDropout : 0.0, _settings.Implementation);
        o = _cProj.call(o.transpose(1, 2).reshape(b, t, hidden));
        return nn.functional.dropout(o, _residualDropout, training).MoveToOuterDisposeScope();
    }
}

/// <summary>Feed-forward <c>c_proj(act(c_fc(x)))</c> (HF <c>GPT2MLP</c>).</summary>
public sealed class Gpt2Mlp : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "c_fc")] private nn.Module<Tensor, Tensor> _cFc;
    [ComponentName(Name = "c_proj")] private nn.Module<Tensor, Tensor> _cProj;
    private readonly Func<Tensor, Tensor> _act;
    private readonly double _dropout;

    internal Gpt2Mlp(ModelBuild build) : base(nameof(Gpt2Mlp))
    {
        var c = build.Config;
        _cFc = build.Linear(c.HiddenSize, c.IntermediateSize, bias: true);
        _cProj = build.Linear(c.IntermediateSize, c.HiddenSize, bias: true);
        _act = Activations.Get(c.HiddenAct, c.SourcePath);
        _dropout = c.HiddenDropout;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return nn.functional.dropout(_cProj.call(_act(_cFc.call(x))), _dropout, training).MoveToOuterDisposeScope();
    }
}

/// <summary>Pre-LayerNorm block: <c>h = x + attn(ln_1(x))</c>, <c>out = h + mlp(ln_2(h))</c> (HF <c>GPT2Block</c>).</summary>
public sealed class Gpt2Block : nn.Module
{
    [ComponentName(Name = "ln_1")] private nn.Module<Tensor, Tensor> _ln1;
    [ComponentName(Name = "attn")] private Gpt2Attention _attn;
    [ComponentName(Name = "ln_2")] private nn.Module<Tensor, Tensor> _ln2;
    [ComponentName(Name = "mlp")] private nn.Module<Tensor, Tensor> _mlp;

    internal Gpt2Block(ModelBuild build, int layerIndex) : base(nameof(Gpt2Block))
    {
        _ln1 = build.LayerNorm(build.Config.HiddenSize);
        _attn = new Gpt2Attention(build, layerIndex);
        _ln2 = build.LayerNorm(build.Config.HiddenSize);
        _mlp = new Gpt2Mlp(build);
        RegisterComponents();
    }

    internal Tensor Forward(Tensor x, Tensor? mask, bool isCausal, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        var h = x + _attn.Forward(_ln1.call(x), mask, isCausal, cache);
        return (h + _mlp.call(_ln2.call(h))).MoveToOuterDisposeScope();
    }
}

/// <summary>The GPT-2 body (HF <c>GPT2Model</c>): token + learned position embeddings, N blocks, final LayerNorm.</summary>
public sealed class Gpt2Model : TransformerModel
{
    [ComponentName(Name = "wte")] private EmbeddingTable _wte;
    [ComponentName(Name = "wpe")] private EmbeddingTable _wpe;
    [ComponentName(Name = "h")] private ModuleList<Gpt2Block> _h;
    [ComponentName(Name = "ln_f")] private nn.Module<Tensor, Tensor> _lnF;

    internal Gpt2Model(ModelBuild build) : base(nameof(Gpt2Model), build)
    {
        var c = build.Config;
        _wte = build.Embedding(c.VocabSize, c.HiddenSize);
        _wpe = build.Embedding(c.MaxPositionEmbeddings, c.HiddenSize);
        _h = new ModuleList<Gpt2Block>(Enumerable.Range(0, c.NumHiddenLayers).Select(i => new Gpt2Block(build, i)).ToArray());
        _lnF = build.LayerNorm(c.HiddenSize);
        RegisterComponents();
        build.Checkpointing.Supported = true;
    }

    public override ModelHeadKind HeadKind => ModelHeadKind.Base;

    public EmbeddingTable Wte => _wte;

    public override IReadOnlySet<string> FanInFanOutModules => ArchitectureMapping.For(Config.Architecture).FanInFanOutPaths(this);

    private protected override ModelOutput ForwardCore(ForwardArgs a)
    {
        var (b, t) = (a.InputIds.shape[0], a.InputIds.shape[1]);
        var past = a.Cache?.Length ?? 0;
        if (a.PositionIds is null && past + t > Config.MaxPositionEmbeddings)
            throw new ArgumentException($"GPT-2 has learned positions for {Config.MaxPositionEmbeddings} tokens (n_positions); got {past + t}.");
        var positions = a.PositionIds ?? torch.arange(past, past + t, dtype: ScalarType.Int64, device: Device).unsqueeze(0).expand(b, t);
        var h = _wte.call(a.InputIds) + _wpe.call(positions);
        if (a.TokenTypeIds is not null) h = h + _wte.call(a.TokenTypeIds);
        h = nn.functional.dropout(h, Config.EmbeddingDropout, training);
        var (mask, isCausal) = DecoderMasks.For(a.AttentionMask, t, past, null, h.dtype, Device);

        var hidden = new List<Tensor>();
        var cache = a.Cache;
        foreach (var block in _h) {
            if (a.OutputHiddenStates) hidden.Add(h);
            h = RunLayer((x, c) => block.Forward(x, c[0], isCausal, cache), h, cache, mask);
        }
        h = _lnF.call(h);
        if (a.OutputHiddenStates) hidden.Add(h);
        return new ModelOutput(h, hidden);
    }
}

/// <summary>GPT-2 with its language-model head, tied to <c>wte</c> by default (HF <c>GPT2LMHeadModel</c>).</summary>
public sealed class Gpt2LMHeadModel : TransformerModel
{
    [ComponentName(Name = "transformer")] private Gpt2Model _transformer;
    [ComponentName(Name = "lm_head")] private nn.Module<Tensor, Tensor> _lmHead;

    internal Gpt2LMHeadModel(ModelBuild build) : base(nameof(Gpt2LMHeadModel), build)
    {
        _transformer = new Gpt2Model(build);
        _lmHead = build.Linear(Config.HiddenSize, Config.VocabSize, bias: false);
        RegisterComponents();
        if (Config.TieWordEmbeddings && _lmHead is Linear head) WeightTying.Tie(head, _transformer.Wte)?.Dispose();
    }

    public override ModelHeadKind HeadKind => ModelHeadKind.CausalLM;

    public Gpt2Model Transformer => _transformer;

    public override IReadOnlySet<string> FanInFanOutModules => ArchitectureMapping.For(Config.Architecture).FanInFanOutPaths(this);

    public override void TieWeights()
    {
        if (Config.TieWordEmbeddings && _lmHead is Linear head) WeightTying.Tie(head, _transformer.Wte);
    }

    public override IReadOnlyList<(string Tied, string Source)> TiedParameters =>
        Config.TieWordEmbeddings ? new[] { ("lm_head.weight", "transformer.wte.weight") } : Array.Empty<(string, string)>();

    private protected override ModelOutput ForwardCore(ForwardArgs a)
    {
        var body = _transformer.ForwardBody(a);
        return body.WithHead(_lmHead.call(body.LastHiddenState));
    }
}

/// <summary>GPT-2 with a bias-free <c>score</c> layer read at each sequence's last real token (HF <c>GPT2ForSequenceClassification</c>).</summary>
public sealed class Gpt2ForSequenceClassification : TransformerModel
{
    [ComponentName(Name = "transformer")] private Gpt2Model _transformer;
    [ComponentName(Name = "score")] private nn.Module<Tensor, Tensor> _score;

    internal Gpt2ForSequenceClassification(ModelBuild build) : base(nameof(Gpt2ForSequenceClassification), build)
    {
        _transformer = new Gpt2Model(build);
        _score = build.Linear(Config.HiddenSize, Config.NumLabels, bias: false);
        RegisterComponents();
    }

    public override ModelHeadKind HeadKind => ModelHeadKind.SequenceClassification;

    public Gpt2Model Transformer => _transformer;

    public override IReadOnlySet<string> FanInFanOutModules => ArchitectureMapping.For(Config.Architecture).FanInFanOutPaths(this);

    private protected override ModelOutput ForwardCore(ForwardArgs a)
    {
        var body = _transformer.ForwardBody(a);
        var logits = _score.call(body.LastHiddenState);
        return body.WithHead(SequencePooling.LastToken(logits, a.InputIds, a.AttentionMask, Config.PadTokenId));
    }
}
