# The main job on the bundled model: load stories260K (a real pretrained Llama, 260K parameters) and let it
# write a story. Run it with `./loraps examples/quickstart.ps1` (or `pwsh` with the module imported).
param(
    [string] $Prompt = 'Once upon a time',
    [int] $MaxNewTokens = 200
)

$model = Import-LoraModel              # no -Path: the bundled models/stories260K
$model

# Greedy decoding reproduces Karpathy's documented sample; stories260K starts each new story with <s> (id 1),
# so that token ends this one.
$story = Invoke-LoraGenerate -Model $model -Prompt $Prompt -MaxNewTokens $MaxNewTokens -StopTokenId 1
$story
''
$story.Text

Remove-LoraModel -Model $model
