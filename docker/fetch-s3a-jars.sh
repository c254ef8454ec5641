#!/usr/bin/env bash
# Image build step: the hadoop-aws jar of exactly the Hadoop version inside the installed
# pyspark, and the AWS SDK v2 bundle that Hadoop release was built against (read from its
# hadoop-project POM), from Maven Central. Usage: fetch-s3a-jars.sh PYTHON DEST
set -euo pipefail
python=$1 dest=$2
maven=${MAVEN_CENTRAL:-https://repo1.maven.org/maven2}
jars=$("$python" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')
hadoop=$(ls "$jars" | sed -n 's/^hadoop-client-api-\(.*\)\.jar$/\1/p')
[[ -n $hadoop ]] || { echo "no hadoop-client-api jar in $jars" >&2; exit 1; }
sdk=$(curl -fsSL "$maven/org/apache/hadoop/hadoop-project/$hadoop/hadoop-project-$hadoop.pom" \
      | sed -n 's:.*<aws-java-sdk-v2.version>\(.*\)</aws-java-sdk-v2.version>.*:\1:p')
[[ -n $sdk ]] || { echo "no aws-java-sdk-v2.version in hadoop-project $hadoop" >&2; exit 1; }
mkdir -p "$dest"
curl -fsSL -o "$dest/hadoop-aws-$hadoop.jar" "$maven/org/apache/hadoop/hadoop-aws/$hadoop/hadoop-aws-$hadoop.jar"
curl -fsSL -o "$dest/bundle-$sdk.jar" "$maven/software/amazon/awssdk/bundle/$sdk/bundle-$sdk.jar"
echo "s3a jars for Hadoop $hadoop: hadoop-aws-$hadoop.jar, AWS SDK bundle-$sdk.jar"
