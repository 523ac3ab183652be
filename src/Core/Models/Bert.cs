using TorchSharp;
using TorchSharp.Utils;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LoraPS.Models;

// BERT and RoBERTa (HF BertForSequenceClassification → bert → encoder.layer.N → attention.self / attention.output /
// intermediate / output). Post-LN: every sublayer is LayerNorm(x + sublayer(x)). RoBERTa is the same network with
// different position ids and classification head, so one body serves both.

/// <summary>word + position + token-type embeddings, then LayerNorm (HF <c>BertEmbeddings</c> / <c>RobertaEmbeddings</c>).</summary>
public sealed class BertEmbeddings : nn.Module
{
    [ComponentName(Name = "word_embeddings")] private EmbeddingTable _wordEmbeddings;
    [ComponentName(Name = "position_embeddings")] private EmbeddingTable _positionEmbeddings;
    [ComponentName(Name = "token_type_embeddings")] private EmbeddingTable _tokenTypeEmbeddings;
    [ComponentName(Name = "LayerNorm")] private nn.Module<Tensor, Tensor> _layerNorm;
    private readonly ModelConfig _config;

    internal BertEmbeddings(ModelBuild build) : base(nameof(BertEmbeddings))
    {
        var c = _config = build.Config;
        _wordEmbeddings = build.Embedding(c.VocabSize, c.HiddenSize);
        _positionEmbeddings = build.Embedding(c.MaxPositionEmbeddings, c.HiddenSize);
        _tokenTypeEmbeddings = build.Embedding(c.TypeVocabSize, c.HiddenSize);
        _layerNorm = build.LayerNorm(c.HiddenSize);
        RegisterComponents();
    }

    internal Tensor Forward(Tensor inputIds, Tensor? positionIds, Tensor? tokenTypeIds)
    {
        using var scope = NewDisposeScope();
        var (b, t) = (inputIds.shape[0], inputIds.shape[1]);
        positionIds ??= _config.Architecture == ModelArchitecture.Roberta
            ? RobertaPositions(inputIds, _config.PadTokenId ?? 1)
            : torch.arange(t, dtype: ScalarType.Int64, device: inputIds.device).unsqueeze(0).expand(b, t);
        if (positionIds.shape[^1] > 0 && positionIds.max().item<long>() >= _config.MaxPositionEmbeddings)
            throw new ArgumentException($"{_config.ModelType} has position embeddings for {_config.MaxPositionEmbeddings} positions (max_position_embeddings); the input needs more.");
        tokenTypeIds ??= torch.zeros(b, t, dtype: ScalarType.Int64, device: inputIds.device);
        var h = _wordEmbeddings.call(inputIds) + _tokenTypeEmbeddings.call(tokenTypeIds) + _positionEmbeddings.call(positionIds);
        h = nn.functional.dropout(_layerNorm.call(h), _config.EmbeddingDropout, training);
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// RoBERTa numbers real tokens from padding_idx + 1 and gives every pad token padding_idx:
    /// <c>cumsum(ids ≠ pad) · (ids ≠ pad) + pad</c>. With pad = 1 the first token sits at position 2.
    /// </summary>
    internal static Tensor RobertaPositions(Tensor inputIds, long padTokenId)
    {
        var notPad = inputIds.ne(padTokenId).to(ScalarType.Int64);
        return notPad.cumsum(1) * notPad + padTokenId;
    }
}

/// <summary>q/k/v projections and scaled dot-product attention (HF <c>BertSelfAttention</c>).</summary>
public sealed class BertSelfAttention : nn.Module
{
    [ComponentName(Name = "query")] private nn.Module<Tensor, Tensor> _query;
    [ComponentName(Name = "key")] private nn.Module<Tensor, Tensor> _key;
    [ComponentName(Name = "value")] private nn.Module<Tensor, Tensor> _value;
    private readonly int _heads, _headDim;
    private readonly double _dropout;
    private readonly AttentionSettings _settings;

    internal BertSelfAttention(ModelBuild build) : base(nameof(BertSelfAttention))
    {
        var c = build.Config;
        (_heads, _headDim, _dropout, _settings) = (c.NumAttentionHeads, c.HeadDim, c.AttentionDropout, build.Attention);
        _query = build.Linear(c.HiddenSize, c.HiddenSize, bias: true);
        _key = build.Linear(c.HiddenSize, c.HiddenSize, bias: true);
        _value = build.Linear(c.HiddenSize, c.HiddenSize, bias: true);
        RegisterComponents();
    }

    internal Tensor Forward(Tensor x, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var (b, t, hidden) = (x.shape[0], x.shape[1], x.shape[2]);
        Tensor Heads(Tensor z) => z.view(b, t, _heads, _headDim).transpose(1, 2);
        var o = AttentionMath.Attend(Heads(_query.call(x)), Heads(_key.call(x)), Heads(_value.call(x)), mask, isCausal: false,
            1.0 / Math.Sqrt(_headDim), training ? _dropout : 0.0, _settings.Implementation);
        return o.transpose(1, 2).reshape(b, t, hidden).MoveToOuterDisposeScope();
    }
}

/// <summary><c>LayerNorm(residual + dropout(dense(x)))</c> — BERT's post-LN sublayer output (HF <c>BertSelfOutput</c> / <c>BertOutput</c>).</summary>
public sealed class BertResidualOutput : nn.Module
{
    [ComponentName(Name = "dense")] private nn.Module<Tensor, Tensor> _dense;
    [ComponentName(Name = "LayerNorm")] private nn.Module<Tensor, Tensor> _layerNorm;
    private readonly double _dropout;

    internal BertResidualOutput(ModelBuild build, long inFeatures) : base(nameof(BertResidualOutput))
    {
        _dense = build.Linear(inFeatures, build.Config.HiddenSize, bias: true);
        _layerNorm = build.LayerNorm(build.Config.HiddenSize);
        _dropout = build.Config.HiddenDropout;
        RegisterComponents();
    }

    internal Tensor Forward(Tensor x, Tensor residual)
    {
        using var scope = NewDisposeScope();
        var h = nn.functional.dropout(_dense.call(x), _dropout, training);
        return _layerNorm.call(h + residual).MoveToOuterDisposeScope();
    }
}

/// <summary>Self-attention plus its output sublayer (HF <c>BertAttention</c>: <c>self</c>, <c>output</c>).</summary>
public sealed class BertAttention : nn.Module
{
    [ComponentName(Name = "self")] private BertSelfAttention _self;
    [ComponentName(Name = "output")] private BertResidualOutput _output;

    internal BertAttention(ModelBuild build) : base(nameof(BertAttention))
    {
        _self = new BertSelfAttention(build);
        _output = new BertResidualOutput(build, build.Config.HiddenSize);
        RegisterComponents();
    }

    internal Tensor Forward(Tensor x, Tensor? mask) => _output.Forward(_self.Forward(x, mask), x);
}

/// <summary><c>act(dense(x))</c> up to the intermediate size (HF <c>BertIntermediate</c>).</summary>
public sealed class BertIntermediate : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "dense")] private nn.Module<Tensor, Tensor> _dense;
    private readonly Func<Tensor, Tensor> _act;

    internal BertIntermediate(ModelBuild build) : base(nameof(BertIntermediate))
    {
        _dense = build.Linear(build.Config.HiddenSize, build.Config.IntermediateSize, bias: true);
        _act = Activations.Get(build.Config.HiddenAct, build.Config.SourcePath);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return _act(_dense.call(x)).MoveToOuterDisposeScope();
    }
}

/// <summary>One encoder layer (HF <c>BertLayer</c>: <c>attention</c>, <c>intermediate</c>, <c>output</c>).</summary>
public sealed class BertLayer : nn.Module
{
    [ComponentName(Name = "attention")] private BertAttention _attention;
    [ComponentName(Name = "intermediate")] private BertIntermediate _intermediate;
    [ComponentName(Name = "output")] private BertResidualOutput _output;

    internal BertLayer(ModelBuild build) : base(nameof(BertLayer))
    {
        _attention = new BertAttention(build);
        _intermediate = new BertIntermediate(build);
        _output = new BertResidualOutput(build, build.Config.IntermediateSize);
        RegisterComponents();
    }

    internal Tensor Forward(Tensor x, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var attended = _attention.Forward(x, mask);
        return _output.Forward(_intermediate.call(attended), attended).MoveToOuterDisposeScope();
    }
}

/// <summary>The stack of layers (HF <c>BertEncoder</c>: <c>layer</c>).</summary>
public sealed class BertEncoder : nn.Module
{
    [ComponentName(Name = "layer")] private ModuleList<BertLayer> _layer;

    internal BertEncoder(ModelBuild build) : base(nameof(BertEncoder))
    {
        _layer = new ModuleList<BertLayer>(Enumerable.Range(0, build.Config.NumHiddenLayers).Select(_ => new BertLayer(build)).ToArray());
        RegisterComponents();
    }

    internal IEnumerable<BertLayer> Layers => _layer;
}

/// <summary><c>tanh(dense(h[:, 0]))</c> — the first token's state, pooled (HF <c>BertPooler</c>).</summary>
public sealed class BertPooler : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "dense")] private nn.Module<Tensor, Tensor> _dense;

    internal BertPooler(ModelBuild build) : base(nameof(BertPooler))
    {
        _dense = build.Linear(build.Config.HiddenSize, build.Config.HiddenSize, bias: true);
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        return _dense.call(hidden.select(1, 0)).tanh().MoveToOuterDisposeScope();
    }
}

/// <summary>
/// The encoder body (HF <c>BertModel</c>, and <c>RobertaModel</c> when the config says roberta). With
/// <c>addPoolingLayer</c> false there is no <c>pooler</c>, as in RobertaForSequenceClassification.
/// </summary>
public sealed class BertModel : TransformerModel
{
    [ComponentName(Name = "embeddings")] private BertEmbeddings _embeddings;
    [ComponentName(Name = "encoder")] private BertEncoder _encoder;
    [ComponentName(Name = "pooler")] private BertPooler? _pooler;

    internal BertModel(ModelBuild build, bool addPoolingLayer) : base(nameof(BertModel), build)
    {
        _embeddings = new BertEmbeddings(build);
        _encoder = new BertEncoder(build);
        _pooler = addPoolingLayer ? new BertPooler(build) : null;
        RegisterComponents();
        build.Checkpointing.Supported = true;
    }

    public override ModelHeadKind HeadKind => ModelHeadKind.Base;

    private protected override ModelOutput ForwardCore(ForwardArgs a)
    {
        var h = _embeddings.Forward(a.InputIds, a.PositionIds, a.TokenTypeIds);
        var mask = AttentionMath.PaddingMask(a.AttentionMask, h.dtype, Device);
        var hidden = new List<Tensor>();
        foreach (var layer in _encoder.Layers) {
            if (a.OutputHiddenStates) hidden.Add(h);
            h = RunLayer((x, c) => layer.Forward(x, c[0]), h, null, mask);
        }
        if (a.OutputHiddenStates) hidden.Add(h);
        var output = new ModelOutput(h, hidden);
        return _pooler is null ? output : output.WithPooled(_pooler.call(h));
    }
}

/// <summary>BERT with <c>classifier</c> on the pooled first token (HF <c>BertForSequenceClassification</c>).</summary>
public sealed class BertForSequenceClassification : TransformerModel
{
    [ComponentName(Name = "bert")] private BertModel _bert;
    [ComponentName(Name = "classifier")] private nn.Module<Tensor, Tensor> _classifier;

    internal BertForSequenceClassification(ModelBuild build) : base(nameof(BertForSequenceClassification), build)
    {
        _bert = new BertModel(build, addPoolingLayer: true);
        _classifier = build.Linear(Config.HiddenSize, Config.NumLabels, bias: true);
        RegisterComponents();
    }

    public override ModelHeadKind HeadKind => ModelHeadKind.SequenceClassification;

    public BertModel Bert => _bert;

    private protected override ModelOutput ForwardCore(ForwardArgs a)
    {
        var body = _bert.ForwardBody(a);
        var pooled = nn.functional.dropout(body.PooledOutput!, Config.ClassifierDropout, training);
        return body.WithHead(_classifier.call(pooled));
    }
}

/// <summary><c>out_proj(dropout(tanh(dense(dropout(h[:, 0])))))</c> on the &lt;s&gt; token (HF <c>RobertaClassificationHead</c>).</summary>
public sealed class RobertaClassificationHead : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "dense")] private nn.Module<Tensor, Tensor> _dense;
    [ComponentName(Name = "out_proj")] private nn.Module<Tensor, Tensor> _outProj;
    private readonly double _dropout;

    internal RobertaClassificationHead(ModelBuild build) : base(nameof(RobertaClassificationHead))
    {
        _dense = build.Linear(build.Config.HiddenSize, build.Config.HiddenSize, bias: true);
        _outProj = build.Linear(build.Config.HiddenSize, build.Config.NumLabels, bias: true);
        _dropout = build.Config.ClassifierDropout;
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        var x = nn.functional.dropout(hidden.select(1, 0), _dropout, training);
        x = nn.functional.dropout(_dense.call(x).tanh(), _dropout, training);
        return _outProj.call(x).MoveToOuterDisposeScope();
    }
}

/// <summary>RoBERTa with its two-layer <c>classifier</c> head and no pooler (HF <c>RobertaForSequenceClassification</c>).</summary>
public sealed class RobertaForSequenceClassification : TransformerModel
{
    [ComponentName(Name = "roberta")] private BertModel _roberta;
    [ComponentName(Name = "classifier")] private RobertaClassificationHead _classifier;

    internal RobertaForSequenceClassification(ModelBuild build) : base(nameof(RobertaForSequenceClassification), build)
    {
        _roberta = new BertModel(build, addPoolingLayer: false);
        _classifier = new RobertaClassificationHead(build);
        RegisterComponents();
    }

    public override ModelHeadKind HeadKind => ModelHeadKind.SequenceClassification;

    public BertModel Roberta => _roberta;

    private protected override ModelOutput ForwardCore(ForwardArgs a)
    {
        var body = _roberta.ForwardBody(a);
        return body.WithHead(_classifier.call(body.LastHiddenState));
    }
}
