# LoraPS runner compatibility functions.
#
# The loraps runner hosts PowerShell from the System.Management.Automation package, which carries only the
# Microsoft.PowerShell.Core cmdlets. Microsoft.PowerShell.Utility (Write-Host, Select-Object, ConvertTo-Json...)
# and Microsoft.PowerShell.Management (Test-Path, Get-Content...) are not on this machine's package feed.
# So that ordinary scripts run, the runner defines each function below ONLY when a command of that name does not
# exist. They are small and honest: they implement the parameters listed in each comment and fail loudly on
# the rest (PowerShell's binder rejects unknown parameters). Under real pwsh none of this is used.
#
# Rules for this file: one top-level `function Name { ... }` per command, no other top-level statements,
# helpers nested inside the function that uses them.

# Write-Host [-Object] <object> [-NoNewline] [-Separator <object>] [-ForegroundColor <c>] [-BackgroundColor <c>]
# As the real one: an information record tagged PSHOST, which the host prints to stdout.
function Write-Host {
    [CmdletBinding()]
    param(
        [Parameter(Position = 0, ValueFromPipeline, ValueFromRemainingArguments)] [object] $Object,
        [switch] $NoNewline,
        [object] $Separator = ' ',
        [ConsoleColor] $ForegroundColor,
        [ConsoleColor] $BackgroundColor
    )
    process {
        $text = if ($Object -is [System.Collections.IEnumerable] -and $Object -isnot [string]) {
            ($Object | ForEach-Object { "$_" }) -join "$Separator"
        } else { "$Object" }
        $message = [System.Management.Automation.HostInformationMessage]@{ Message = $text; NoNewLine = $NoNewline.IsPresent }
        if ($PSBoundParameters.ContainsKey('ForegroundColor')) { $message.ForegroundColor = $ForegroundColor }
        if ($PSBoundParameters.ContainsKey('BackgroundColor')) { $message.BackgroundColor = $BackgroundColor }
        $PSCmdlet.WriteInformation($message, [string[]] @('PSHOST'))
    }
}

# Write-Output [-InputObject] <object[]> [-NoEnumerate]
function Write-Output {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory, Position = 0, ValueFromPipeline, ValueFromRemainingArguments)] [AllowNull()] [AllowEmptyCollection()] [object[]] $InputObject,
        [switch] $NoEnumerate
    )
    process {
        if ($NoEnumerate) { $PSCmdlet.WriteObject($InputObject, $false) }
        else { foreach ($item in $InputObject) { $PSCmdlet.WriteObject($item, $true) } }
    }
}

# Write-Error [-Message] <string> [-Category <ErrorCategory>] [-ErrorId <string>] [-TargetObject <object>]
# Write-Error -Exception <Exception> ...   Write-Error -ErrorRecord <ErrorRecord>
function Write-Error {
    [CmdletBinding(DefaultParameterSetName = 'Message')]
    param(
        [Parameter(ParameterSetName = 'Message', Mandatory, Position = 0, ValueFromPipeline)] [AllowEmptyString()] [Alias('Msg')] [string] $Message,
        [Parameter(ParameterSetName = 'Exception', Mandatory)] [Exception] $Exception,
        [Parameter(ParameterSetName = 'ErrorRecord', Mandatory)] [System.Management.Automation.ErrorRecord] $ErrorRecord,
        [System.Management.Automation.ErrorCategory] $Category = 'NotSpecified',
        [string] $ErrorId,
        [object] $TargetObject
    )
    process {
        $record = switch ($PSCmdlet.ParameterSetName) {
            'ErrorRecord' { $ErrorRecord }
            'Exception' { [System.Management.Automation.ErrorRecord]::new($Exception, $(if ($ErrorId) { $ErrorId } else { $Exception.GetType().FullName }), $Category, $TargetObject) }
            default {
                # The real cmdlet's WriteErrorException lives in the missing Utility assembly; the id matches it.
                $ex = [System.Exception]::new($Message)
                [System.Management.Automation.ErrorRecord]::new($ex, $(if ($ErrorId) { $ErrorId } else { 'Microsoft.PowerShell.Commands.WriteErrorException' }), $Category, $TargetObject)
            }
        }
        $PSCmdlet.WriteError($record)
    }
}

# Write-Warning [-Message] <string>
function Write-Warning {
    [CmdletBinding()]
    param([Parameter(Mandatory, Position = 0, ValueFromPipeline)] [AllowEmptyString()] [Alias('Msg')] [string] $Message)
    process { $PSCmdlet.WriteWarning($Message) }
}

# Write-Verbose [-Message] <string>
function Write-Verbose {
    [CmdletBinding()]
    param([Parameter(Mandatory, Position = 0, ValueFromPipeline)] [AllowEmptyString()] [Alias('Msg')] [string] $Message)
    process { $PSCmdlet.WriteVerbose($Message) }
}

# Write-Debug [-Message] <string>
function Write-Debug {
    [CmdletBinding()]
    param([Parameter(Mandatory, Position = 0, ValueFromPipeline)] [AllowEmptyString()] [Alias('Msg')] [string] $Message)
    process { $PSCmdlet.WriteDebug($Message) }
}

# Write-Information [-MessageData] <object> [-Tags <string[]>]
function Write-Information {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory, Position = 0)] [AllowNull()] [Alias('Msg', 'Message')] [object] $MessageData,
        [Parameter(Position = 1)] [string[]] $Tags = @()
    )
    $PSCmdlet.WriteInformation($MessageData, $Tags)
}

# Write-Progress [-Activity] <string> [[-Status] <string>] [[-Id] <int>] [-PercentComplete <int>]
#                [-SecondsRemaining <int>] [-CurrentOperation <string>] [-ParentId <int>] [-Completed]
function Write-Progress {
    [CmdletBinding()]
    param(
        [Parameter(Position = 0)] [string] $Activity = 'Working',
        [Parameter(Position = 1)] [string] $Status = 'Processing',
        [Parameter(Position = 2)] [int] $Id = 0,
        [ValidateRange(-1, 100)] [int] $PercentComplete = -1,
        [int] $SecondsRemaining = -1,
        [string] $CurrentOperation,
        [int] $ParentId = -1,
        [switch] $Completed
    )
    $record = [System.Management.Automation.ProgressRecord]::new($Id, $Activity, $Status)
    $record.PercentComplete = $PercentComplete
    $record.SecondsRemaining = $SecondsRemaining
    $record.CurrentOperation = $CurrentOperation
    $record.ParentActivityId = $ParentId
    if ($Completed) { $record.RecordType = 'Completed' }
    $PSCmdlet.WriteProgress($record)
}

# Select-Object [[-Property] <object[]>] [-ExpandProperty <string>] [-First <int>] [-Last <int>] [-Skip <int>] [-Unique]
# Property items: names (wildcards allowed) or @{ Name|Label|N|L = '...'; Expression|E = { ... } | 'Prop' }.
# Unlike the real one, -First does not stop the commands before it early; it drops the rest.
function Select-Object {
    [CmdletBinding()]
    param(
        [Parameter(ValueFromPipeline)] [psobject] $InputObject,
        [Parameter(Position = 0)] [object[]] $Property,
        [string] $ExpandProperty,
        [int] $First,
        [int] $Last,
        [int] $Skip,
        [switch] $Unique
    )
    begin {
        if ($Property -and $ExpandProperty) {
            throw [System.NotSupportedException]::new('The loraps Select-Object does not combine -Property with -ExpandProperty; use two Select-Object calls.')
        }
        $seen = 0; $emitted = 0
        $tail = [System.Collections.Generic.Queue[object]]::new()
        $uniques = [System.Collections.Generic.List[object]]::new()
        function Shape($item) {
            if ($ExpandProperty) {
                $value = $item.$ExpandProperty
                if ($null -eq $item.PSObject.Properties[$ExpandProperty]) {
                    $PSCmdlet.WriteError([System.Management.Automation.ErrorRecord]::new(
                        [System.ArgumentException]::new("Property '$ExpandProperty' cannot be found."), 'ExpandPropertyNotFound', 'InvalidArgument', $item))
                    return
                }
                if ($value -is [System.Collections.IEnumerable] -and $value -isnot [string]) { foreach ($v in $value) { , $v } } else { , $value }
                return
            }
            if (-not $Property) { return , $item }
            $shaped = [ordered]@{}
            foreach ($p in $Property) {
                if ($p -is [System.Collections.IDictionary]) {
                    $name = foreach ($k in 'Name', 'N', 'Label', 'L') { if ($p.Contains($k)) { $p[$k]; break } }
                    $expression = foreach ($k in 'Expression', 'E') { if ($p.Contains($k)) { $p[$k]; break } }
                    if ($expression -is [scriptblock]) {
                        $value = $expression.InvokeWithContext($null, [System.Collections.Generic.List[psvariable]]@([psvariable]::new('_', $item)))
                        $shaped["$name"] = if ($value.Count -eq 1) { $value[0] } elseif ($value.Count -eq 0) { $null } else { @($value) }
                    } else {
                        $shaped[$(if ($name) { "$name" } else { "$expression" })] = $item."$expression"
                    }
                } else {
                    $matched = @($item.PSObject.Properties | Where-Object { $_.Name -like "$p" })
                    if ($matched.Count -eq 0 -and -not [System.Management.Automation.WildcardPattern]::ContainsWildcardCharacters("$p")) { $shaped["$p"] = $null }
                    foreach ($m in $matched) { $shaped[$m.Name] = $m.Value }
                }
            }
            [pscustomobject] $shaped
        }
        function Emit($item) {
            if ($Unique) {
                foreach ($u in $uniques) { if ([System.Management.Automation.LanguagePrimitives]::Equals($u, $item, $true)) { return } }
                $uniques.Add($item)
            }
            Shape $item
        }
    }
    process {
        $seen++
        if ($PSBoundParameters.ContainsKey('Skip') -and $seen -le $Skip) { return }
        if ($PSBoundParameters.ContainsKey('Last')) {
            $tail.Enqueue($InputObject)
            if ($tail.Count -gt $Last) { [void] $tail.Dequeue() }
            return
        }
        if ($PSBoundParameters.ContainsKey('First') -and $emitted -ge $First) { return }
        $emitted++
        Emit $InputObject
    }
    end {
        foreach ($item in $tail) { Emit $item }
    }
}

# Sort-Object [[-Property] <object[]>] [-Descending] [-Unique]   (stable; properties are names or script blocks)
function Sort-Object {
    [CmdletBinding()]
    param(
        [Parameter(ValueFromPipeline)] [psobject] $InputObject,
        [Parameter(Position = 0)] [object[]] $Property,
        [switch] $Descending,
        [switch] $Unique
    )
    begin { $items = [System.Collections.Generic.List[object]]::new() }
    process { if ($null -ne $InputObject) { $items.Add($InputObject) } }
    end {
        function Keys($item) {
            if (-not $Property) { return , @($item) }
            , @(foreach ($p in $Property) {
                if ($p -is [scriptblock]) { $p.InvokeWithContext($null, [System.Collections.Generic.List[psvariable]]@([psvariable]::new('_', $item))) | ForEach-Object { $_ } }
                else { $item.$p }
            })
        }
        $keyed = for ($i = 0; $i -lt $items.Count; $i++) { [pscustomobject]@{ Keys = (Keys $items[$i]); Index = $i; Item = $items[$i] } }
        $list = [System.Collections.Generic.List[object]]::new()
        foreach ($k in @($keyed)) { $list.Add($k) }
        $sign = if ($Descending) { -1 } else { 1 }
        $list.Sort([System.Comparison[object]] {
            param($a, $b)
            for ($k = 0; $k -lt $a.Keys.Count; $k++) {
                $c = [System.Management.Automation.LanguagePrimitives]::Compare($a.Keys[$k], $b.Keys[$k], $true)
                if ($c -ne 0) { return $sign * $c }
            }
            $a.Index.CompareTo($b.Index)
        })
        $previous = $null; $first = $true
        foreach ($entry in $list) {
            if ($Unique -and -not $first -and [System.Management.Automation.LanguagePrimitives]::Compare(($entry.Keys -join "`0"), ($previous -join "`0"), $true) -eq 0) { continue }
            $previous = $entry.Keys; $first = $false
            $entry.Item
        }
    }
}

# Measure-Object [[-Property] <string[]>] [-Sum] [-Average] [-Minimum] [-Maximum]
# Emits one object per property (or one for the input itself) with Count, Average, Sum, Maximum, Minimum, Property.
function Measure-Object {
    [CmdletBinding()]
    param(
        [Parameter(ValueFromPipeline)] [psobject] $InputObject,
        [Parameter(Position = 0)] [string[]] $Property,
        [switch] $Sum, [switch] $Average, [switch] $Minimum, [switch] $Maximum
    )
    begin { $values = [ordered]@{}; foreach ($p in $(if ($Property) { $Property } else { '' })) { $values[$p] = [System.Collections.Generic.List[object]]::new() } }
    process {
        if ($null -eq $InputObject) { return }
        foreach ($p in @($values.Keys)) {
            $v = if ($p -eq '') { $InputObject } else { $InputObject.$p }
            if ($null -ne $v) { $values[$p].Add($v) }
        }
    }
    end {
        foreach ($p in $values.Keys) {
            $list = $values[$p]
            $numbers = if ($Sum -or $Average) { @($list | ForEach-Object { [double] $_ }) } else { @() }
            $total = 0.0; foreach ($n in $numbers) { $total += $n }
            $min = $null; $max = $null
            if ($Minimum -or $Maximum) {
                foreach ($v in $list) {
                    if ($null -eq $min -or [System.Management.Automation.LanguagePrimitives]::Compare($v, $min, $true) -lt 0) { $min = $v }
                    if ($null -eq $max -or [System.Management.Automation.LanguagePrimitives]::Compare($v, $max, $true) -gt 0) { $max = $v }
                }
            }
            [pscustomobject][ordered]@{
                Count    = $list.Count
                Average  = if ($Average -and $list.Count) { $total / $list.Count } else { $null }
                Sum      = if ($Sum) { $total } else { $null }
                Maximum  = if ($Maximum) { $max } else { $null }
                Minimum  = if ($Minimum) { $min } else { $null }
                Property = if ($p) { $p } else { $null }
            }
        }
    }
}

# Format-Table [[-Property] <object[]>]
# Passes objects on to Out-Default, which renders each type's default view (a table for LoraPS records).
# With -Property it passes Select-Object-shaped objects; PowerShell shows those with 5+ properties as a list.
function Format-Table {
    [CmdletBinding()]
    param(
        [Parameter(ValueFromPipeline)] [psobject] $InputObject,
        [Parameter(Position = 0)] [object[]] $Property,
        [switch] $AutoSize, [switch] $Wrap, [switch] $HideTableHeaders
    )
    process {
        if ($null -eq $InputObject) { return }
        if ($Property) { Select-Object -InputObject $InputObject -Property $Property } else { $InputObject }
    }
}

# Format-List [[-Property] <object[]>]
# Writes each object as "Name : Value" lines (all properties, or those given), one blank line between objects.
# The type's own list view in a .format.ps1xml is not used.
function Format-List {
    [CmdletBinding()]
    param(
        [Parameter(ValueFromPipeline)] [psobject] $InputObject,
        [Parameter(Position = 0)] [object[]] $Property = @('*')
    )
    process {
        if ($null -eq $InputObject) { return }
        $shaped = Select-Object -InputObject $InputObject -Property $Property
        $props = @($shaped.PSObject.Properties)
        $width = ($props | ForEach-Object { $_.Name.Length } | Measure-Object -Maximum).Maximum
        ''
        foreach ($p in $props) {
            $value = if ($p.Value -is [System.Collections.IEnumerable] -and $p.Value -isnot [string]) { '{' + ((@($p.Value) | ForEach-Object { "$_" }) -join ', ') + '}' } else { "$($p.Value)" }
            $p.Name.PadRight($width) + ' : ' + $value
        }
    }
    end { '' }
}

# ConvertTo-Json [-InputObject] <object> [-Depth <int>] [-Compress] [-EnumsAsStrings] [-AsArray]
# Serialises with System.Text.Json. As the real one: default depth 2 (deeper objects become their string),
# enums as numbers unless -EnumsAsStrings, several pipeline inputs make an array.
function ConvertTo-Json {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory, Position = 0, ValueFromPipeline)] [AllowNull()] [object] $InputObject,
        [ValidateRange(0, 100)] [int] $Depth = 2,
        [switch] $Compress,
        [switch] $EnumsAsStrings,
        [switch] $AsArray
    )
    begin {
        $items = [System.Collections.Generic.List[object]]::new()
        function Tree($value, [int] $level) {
            # Type tests look at the wrapped .NET object; properties come from the PSObject (note properties too).
            $base = if ($value -is [psobject]) { $value.PSObject.BaseObject } else { $value }
            if ($null -eq $base -or $base -is [System.DBNull]) { return $null }
            if ($base -is [string] -or $base -is [char] -or $base -is [guid] -or $base -is [uri] -or $base -is [version]) { return "$base" }
            if ($base -is [enum]) { if ($EnumsAsStrings) { return "$base" } else { return [System.Convert]::ToInt64($base) } }
            if ($base -is [bool] -or $base -is [int] -or $base -is [long] -or $base -is [double] -or $base -is [single] -or $base -is [decimal] -or
                $base -is [byte] -or $base -is [int16] -or $base -is [uint16] -or $base -is [uint32] -or $base -is [uint64] -or $base -is [sbyte]) { return $base }
            if ($base -is [datetime] -or $base -is [datetimeoffset]) { return $base.ToString('o') }
            if ($base -is [timespan]) { return "$base" }
            if ($level -ge $Depth + 1) { return "$base" }
            if ($base -is [System.Collections.IDictionary]) {
                $map = [System.Collections.Generic.Dictionary[string, object]]::new()
                foreach ($key in $base.Keys) { $map["$key"] = Tree $base[$key] ($level + 1) }
                return , $map
            }
            if ($base -is [System.Collections.IEnumerable]) {
                $list = [System.Collections.Generic.List[object]]::new()
                foreach ($v in $base) { $list.Add((Tree $v ($level + 1))) }
                return , $list
            }
            $map = [System.Collections.Generic.Dictionary[string, object]]::new()
            foreach ($p in $value.PSObject.Properties) {
                if ($p.IsGettable) { $map[$p.Name] = Tree $p.Value ($level + 1) }
            }
            , $map
        }
    }
    process { $items.Add($InputObject) }
    end {
        $value = if ($items.Count -eq 1 -and -not $AsArray) { $items[0] } else { , $items.ToArray() }
        $options = [System.Text.Json.JsonSerializerOptions]::new()
        $options.WriteIndented = -not $Compress
        $options.Encoder = [System.Text.Encodings.Web.JavaScriptEncoder]::UnsafeRelaxedJsonEscaping
        [System.Text.Json.JsonSerializer]::Serialize((Tree $value 0), [object], $options)
    }
}

# ConvertFrom-Json [-InputObject] <string> [-AsHashtable] [-NoEnumerate]
# Objects become PSCustomObjects (ordered hashtables with -AsHashtable), numbers Int64 or Double.
# Unlike the real one, date strings stay strings.
function ConvertFrom-Json {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory, Position = 0, ValueFromPipeline)] [AllowEmptyString()] [string] $InputObject,
        [switch] $AsHashtable,
        [switch] $NoEnumerate
    )
    begin {
        $lines = [System.Collections.Generic.List[string]]::new()
        function Convert([System.Text.Json.JsonElement] $e) {
            switch ($e.ValueKind) {
                'Object' {
                    $map = [ordered]@{}
                    foreach ($p in $e.EnumerateObject()) { $map[$p.Name] = Convert $p.Value }
                    if ($AsHashtable) { return , $map } else { return [pscustomobject] $map }
                }
                'Array' { return , @(foreach ($v in $e.EnumerateArray()) { , (Convert $v) }) }
                'String' { return $e.GetString() }
                'Number' { $l = 0L; if ($e.TryGetInt64([ref] $l)) { return $l } else { return $e.GetDouble() } }
                'True' { return $true }
                'False' { return $false }
                default { return $null }
            }
        }
    }
    process { $lines.Add($InputObject) }
    end {
        $text = $lines -join "`n"
        if ($text.Trim().Length -eq 0) { return }
        $document = [System.Text.Json.JsonDocument]::Parse($text)
        try {
            $result = Convert $document.RootElement
            if ($NoEnumerate) { $PSCmdlet.WriteObject($result, $false) } else { $PSCmdlet.WriteObject($result, $true) }
        } finally { $document.Dispose() }
    }
}

# Start-Sleep [-Seconds] <double> | -Milliseconds <int>   (Ctrl+C interrupts it)
function Start-Sleep {
    [CmdletBinding(DefaultParameterSetName = 'Seconds')]
    param(
        [Parameter(ParameterSetName = 'Seconds', Mandatory, Position = 0)] [double] $Seconds,
        [Parameter(ParameterSetName = 'Milliseconds', Mandatory)] [Alias('ms')] [int] $Milliseconds
    )
    $until = [datetime]::UtcNow.AddMilliseconds($(if ($PSCmdlet.ParameterSetName -eq 'Seconds') { $Seconds * 1000 } else { $Milliseconds }))
    # Short naps: PowerShell notices a stop request between statements, so the loop stays interruptible.
    while ([datetime]::UtcNow -lt $until) {
        [System.Threading.Thread]::Sleep([Math]::Max(0, [Math]::Min(50, ($until - [datetime]::UtcNow).TotalMilliseconds)))
    }
}

# Get-Date [[-Date] <datetime>] [-Format <string>] [-AsUTC]
function Get-Date {
    [CmdletBinding()]
    param([Parameter(Position = 0, ValueFromPipeline)] [datetime] $Date = [datetime]::Now, [string] $Format, [switch] $AsUTC)
    process {
        $d = if ($AsUTC) { $Date.ToUniversalTime() } else { $Date }
        if ($Format) { $d.ToString($Format) } else { $d }
    }
}

# New-Object [-TypeName] <string> [[-ArgumentList] <object[]>] [-Property <IDictionary>]
function New-Object {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory, Position = 0)] [string] $TypeName,
        [Parameter(Position = 1)] [Alias('Args')] [object[]] $ArgumentList,
        [System.Collections.IDictionary] $Property
    )
    $type = $TypeName -as [type]
    if ($null -eq $type) { throw [System.Management.Automation.PSArgumentException]::new("Cannot find type [$TypeName]: verify that the assembly containing this type is loaded.") }
    $object = if ($ArgumentList) { $type::new.Invoke($ArgumentList) } else { $type::new() }
    if ($Property) { foreach ($k in $Property.Keys) { $object.$k = $Property[$k] } }
    $object
}

# Join-Path [-Path] <string> [-ChildPath] <string> [[-AdditionalChildPath] <string[]>]
function Join-Path {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory, Position = 0, ValueFromPipeline)] [string] $Path,
        [Parameter(Mandatory, Position = 1)] [AllowEmptyString()] [string] $ChildPath,
        [Parameter(Position = 2, ValueFromRemainingArguments)] [string[]] $AdditionalChildPath = @()
    )
    process {
        $result = $ExecutionContext.SessionState.Path.Combine($Path, $ChildPath)
        foreach ($c in $AdditionalChildPath) { $result = $ExecutionContext.SessionState.Path.Combine($result, $c) }
        $result
    }
}

# Split-Path [-Path] <string> [-Leaf | -Parent | -Extension | -LeafBase]
function Split-Path {
    [CmdletBinding(DefaultParameterSetName = 'Parent')]
    param(
        [Parameter(Mandatory, Position = 0, ValueFromPipeline)] [string] $Path,
        [Parameter(ParameterSetName = 'Parent')] [switch] $Parent,
        [Parameter(ParameterSetName = 'Leaf')] [switch] $Leaf,
        [Parameter(ParameterSetName = 'LeafBase')] [switch] $LeafBase,
        [Parameter(ParameterSetName = 'Extension')] [switch] $Extension
    )
    process {
        $trimmed = if ($Path.Length -gt 1) { $Path.TrimEnd('/', '\') } else { $Path }
        switch ($PSCmdlet.ParameterSetName) {
            'Leaf' { [System.IO.Path]::GetFileName($trimmed) }
            'LeafBase' { [System.IO.Path]::GetFileNameWithoutExtension($trimmed) }
            'Extension' { [System.IO.Path]::GetExtension($trimmed) }
            default { [System.IO.Path]::GetDirectoryName($trimmed) }
        }
    }
}

# Test-Path [-Path] <string[]> | -LiteralPath <string[]> [-PathType Any|Container|Leaf]
function Test-Path {
    [CmdletBinding(DefaultParameterSetName = 'Path')]
    param(
        [Parameter(ParameterSetName = 'Path', Mandatory, Position = 0, ValueFromPipeline)] [AllowEmptyString()] [string[]] $Path,
        [Parameter(ParameterSetName = 'LiteralPath', Mandatory)] [Alias('PSPath', 'LP')] [string[]] $LiteralPath,
        [ValidateSet('Any', 'Container', 'Leaf')] [string] $PathType = 'Any'
    )
    process {
        $literal = $PSCmdlet.ParameterSetName -eq 'LiteralPath'
        foreach ($p in $(if ($literal) { $LiteralPath } else { $Path })) {
            if ([string]::IsNullOrWhiteSpace($p)) { $false; continue }
            $exists = try { $ExecutionContext.SessionState.InvokeProvider.Item.Exists($p, $false, $literal) } catch { $false }
            if (-not $exists -or $PathType -eq 'Any') { $exists; continue }
            $isContainer = $ExecutionContext.SessionState.InvokeProvider.Item.IsContainer($(if ($literal) { [System.Management.Automation.WildcardPattern]::Escape($p) } else { $p }))
            if ($PathType -eq 'Container') { $isContainer } else { -not $isContainer }
        }
    }
}

# Get-Content [-Path] <string> | -LiteralPath <string> [-Raw] [-TotalCount <int>]   (UTF-8)
function Get-Content {
    [CmdletBinding(DefaultParameterSetName = 'Path')]
    param(
        [Parameter(ParameterSetName = 'Path', Mandatory, Position = 0, ValueFromPipeline)] [string] $Path,
        [Parameter(ParameterSetName = 'LiteralPath', Mandatory)] [Alias('PSPath', 'LP')] [string] $LiteralPath,
        [switch] $Raw,
        [Alias('First', 'Head')] [int] $TotalCount = -1
    )
    process {
        $files = if ($PSCmdlet.ParameterSetName -eq 'LiteralPath') { , $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($LiteralPath) }
                 else { $ExecutionContext.SessionState.Path.GetResolvedProviderPathFromPSPath($Path, [ref] $null) }
        foreach ($file in $files) {
            if (-not [System.IO.File]::Exists($file)) {
                $PSCmdlet.WriteError([System.Management.Automation.ErrorRecord]::new([System.IO.FileNotFoundException]::new("Cannot find path '$file' because it does not exist."), 'PathNotFound', 'ObjectNotFound', $file))
                continue
            }
            if ($Raw) { [System.IO.File]::ReadAllText($file) }
            elseif ($TotalCount -ge 0) { [System.Linq.Enumerable]::Take([System.IO.File]::ReadLines($file), $TotalCount) }
            else { [System.IO.File]::ReadLines($file) }
        }
    }
}

# Set-Content / Add-Content [-Path] <string> [-Value] <object[]> [-NoNewline]   (UTF-8 without BOM, \n line ends)
function Set-Content {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory, Position = 0)] [Alias('PSPath', 'LiteralPath')] [string] $Path,
        [Parameter(Position = 1, ValueFromPipeline)] [AllowNull()] [AllowEmptyCollection()] [object[]] $Value,
        [switch] $NoNewline
    )
    begin { $lines = [System.Collections.Generic.List[string]]::new() }
    process { foreach ($v in $Value) { $lines.Add("$v") } }
    end { Write-LoraRunnerContent $Path $lines $NoNewline -Append:$false }
}

function Add-Content {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory, Position = 0)] [Alias('PSPath', 'LiteralPath')] [string] $Path,
        [Parameter(Position = 1, ValueFromPipeline)] [AllowNull()] [AllowEmptyCollection()] [object[]] $Value,
        [switch] $NoNewline
    )
    begin { $lines = [System.Collections.Generic.List[string]]::new() }
    process { foreach ($v in $Value) { $lines.Add("$v") } }
    end { Write-LoraRunnerContent $Path $lines $NoNewline -Append:$true }
}

# The shared body of Set-Content and Add-Content.
function Write-LoraRunnerContent {
    param([string] $Path, $Lines, [bool] $NoNewline, [switch] $Append)
    $file = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($Path)
    $text = if ($NoNewline) { $Lines -join '' } else { ($Lines | ForEach-Object { "$_`n" }) -join '' }
    $utf8 = [System.Text.UTF8Encoding]::new($false)
    if ($Append) { [System.IO.File]::AppendAllText($file, $text, $utf8) } else { [System.IO.File]::WriteAllText($file, $text, $utf8) }
}

# Get-ChildItem [[-Path] <string>] [-Filter <string>] [-Recurse] [-File] [-Directory] [-Force]
function Get-ChildItem {
    [CmdletBinding()]
    param(
        [Parameter(Position = 0, ValueFromPipeline)] [string] $Path = '.',
        [Parameter(Position = 1)] [string] $Filter,
        [switch] $Recurse, [switch] $File, [switch] $Directory, [switch] $Force
    )
    process {
        foreach ($item in $ExecutionContext.SessionState.InvokeProvider.ChildItem.Get([string[]] @($Path), $Recurse.IsPresent, [uint32]::MaxValue, $Force.IsPresent, $false)) {
            if ($Filter -and $item.PSChildName -notlike $Filter) { continue }
            if ($File -and $item.PSIsContainer) { continue }
            if ($Directory -and -not $item.PSIsContainer) { continue }
            $item
        }
    }
}

# Get-Item [-Path] <string[]> | -LiteralPath <string[]>
function Get-Item {
    [CmdletBinding(DefaultParameterSetName = 'Path')]
    param(
        [Parameter(ParameterSetName = 'Path', Mandatory, Position = 0, ValueFromPipeline)] [string[]] $Path,
        [Parameter(ParameterSetName = 'LiteralPath', Mandatory)] [Alias('PSPath', 'LP')] [string[]] $LiteralPath,
        [switch] $Force
    )
    process {
        $literal = $PSCmdlet.ParameterSetName -eq 'LiteralPath'
        $ExecutionContext.SessionState.InvokeProvider.Item.Get([string[]] $(if ($literal) { $LiteralPath } else { $Path }), $Force.IsPresent, $literal)
    }
}

# New-Item [-Path] <string> [-ItemType File|Directory] [-Value <object>] [-Force]
function New-Item {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory, Position = 0, ValueFromPipeline)] [string] $Path,
        [Alias('Type')] [ValidateSet('File', 'Directory')] [string] $ItemType = 'File',
        [object] $Value,
        [switch] $Force
    )
    process {
        $full = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($Path)
        if ($ItemType -eq 'Directory') {
            if ([System.IO.Directory]::Exists($full) -and -not $Force) {
                throw [System.IO.IOException]::new("An item with the specified name $full already exists.")
            }
            [System.IO.Directory]::CreateDirectory($full)
        } else {
            if ([System.IO.File]::Exists($full) -and -not $Force) {
                throw [System.IO.IOException]::new("The file '$full' already exists.")
            }
            if ($Force) { [void] [System.IO.Directory]::CreateDirectory([System.IO.Path]::GetDirectoryName($full)) }
            [System.IO.File]::WriteAllText($full, $(if ($null -ne $Value) { "$Value" } else { '' }), [System.Text.UTF8Encoding]::new($false))
            [System.IO.FileInfo]::new($full)
        }
    }
}

# Remove-Item [-Path] <string[]> | -LiteralPath <string[]> [-Recurse] [-Force]
function Remove-Item {
    [CmdletBinding(DefaultParameterSetName = 'Path')]
    param(
        [Parameter(ParameterSetName = 'Path', Mandatory, Position = 0, ValueFromPipeline)] [string[]] $Path,
        [Parameter(ParameterSetName = 'LiteralPath', Mandatory)] [Alias('PSPath', 'LP')] [string[]] $LiteralPath,
        [switch] $Recurse, [switch] $Force
    )
    process {
        $literal = $PSCmdlet.ParameterSetName -eq 'LiteralPath'
        $ExecutionContext.SessionState.InvokeProvider.Item.Remove([string[]] $(if ($literal) { $LiteralPath } else { $Path }), $Recurse.IsPresent, $Force.IsPresent, $literal)
    }
}

# Get-Location
function Get-Location {
    [CmdletBinding()]
    param()
    $ExecutionContext.SessionState.Path.CurrentLocation
}

# Set-Location [[-Path] <string>]
function Set-Location {
    [CmdletBinding()]
    param([Parameter(Position = 0, ValueFromPipeline)] [string] $Path = '~')
    process { [void] $ExecutionContext.SessionState.Path.SetLocation($Path) }
}
